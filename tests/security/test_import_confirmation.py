"""Issue 11, finding 1: the import confirmation's hidden fields were trusted. An edited `import_file_name`
imported (and deleted) another upload; an edited `campaign` imported into an inactive campaign. The confirmation
now carries a signed token naming the file, the campaign and the user."""

import os
import tempfile

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign, Lead, LeadImport

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("admin:campaigns_lead_import")
CONFIRM_URL = reverse("admin:campaigns_lead_process_import")


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def preview(client, campaign, tmp_path, phone="9876543210"):
    path = tmp_path / f"{phone}.csv"
    path.write_text(f"Phone,Name\n{phone},Asha\n")
    with path.open("rb") as f:
        page = client.post(IMPORT_URL, {"campaign": campaign.pk, "format": "0", "resource": "0", "import_file": f})
    form = page.context["confirm_form"]
    return {name: form.initial[name] for name in form.fields}


def other_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("other", "o@example.com", None))
    return client


def test_a_forged_file_name_imports_and_deletes_nothing(admin_client, campaign, tmp_path, temp_folder, import_media):
    theirs = preview(other_client(), campaign, tmp_path, phone="9876543211")
    (their_file,) = temp_folder.iterdir()
    mine = preview(admin_client, campaign, tmp_path)

    forged = {**mine, "import_file_name": their_file.name}
    answer = admin_client.post(CONFIRM_URL, forged, follow=True)

    assert "upload the file again" in answer.content.decode()
    assert their_file.exists() and not LeadImport.objects.exists() and not Lead.objects.exists()
    assert theirs["import_file_name"] != their_file.name, "the name never travels bare"


def test_a_preview_confirmed_by_another_user_is_refused(admin_client, campaign, tmp_path, temp_folder, import_media):
    mine = preview(admin_client, campaign, tmp_path)
    answer = other_client().post(CONFIRM_URL, mine, follow=True)
    assert "upload the file again" in answer.content.decode()
    assert not LeadImport.objects.exists() and len(os.listdir(temp_folder)) == 1


def test_the_campaign_cannot_be_swapped_for_another_or_an_inactive_one(
    admin_client, campaign, account, tmp_path, temp_folder, import_media
):
    inactive = Campaign.objects.create(account=account, name="Old", column_map=["PhoneNumber"], is_active=False)
    other = Campaign.objects.create(account=account, name="Other", column_map=["PhoneNumber", "Name"])
    confirmation = preview(admin_client, campaign, tmp_path)
    for swapped in (inactive, other):
        answer = admin_client.post(CONFIRM_URL, {**confirmation, "campaign": swapped.pk}, follow=True)
        assert "upload the file again" in answer.content.decode() or "incomplete" in answer.content.decode()
    assert not LeadImport.objects.exists()

    answer = admin_client.post(CONFIRM_URL, confirmation, follow=True)
    assert LeadImport.objects.get().campaign == campaign and Lead.objects.count() == 1
