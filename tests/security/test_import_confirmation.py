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


def upload(client, campaign, tmp_path, phone="9876543210"):
    """Step 1: the upload, answered by the column-mapping step; returns the mapping form's data as submitted."""
    path = tmp_path / f"{phone}.csv"
    path.write_text(f"Phone,Name\n{phone},Asha\n")
    with path.open("rb") as f:
        page = client.post(IMPORT_URL, {"campaign": campaign.pk, "format": "0", "resource": "0", "import_file": f})
    form = page.context["mapping_form"]
    data = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}
    return {**data, "column_mapping": "1"}


def preview(client, campaign, tmp_path, phone="9876543210"):
    """Upload and keep the proposed mapping: the confirmation's data as the preview hands it out."""
    page = client.post(IMPORT_URL, upload(client, campaign, tmp_path, phone))
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


def test_the_mapping_step_cannot_be_pointed_at_another_upload_or_campaign(
    admin_client, campaign, account, tmp_path, temp_folder, import_media
):
    upload(other_client(), campaign, tmp_path, phone="9876543211")
    (their_file,) = temp_folder.iterdir()
    mapping = upload(admin_client, campaign, tmp_path)
    inactive = Campaign.objects.create(account=account, name="Old", column_map=["PhoneNumber"], is_active=False)

    page = admin_client.post(IMPORT_URL, {**mapping, "import_file_name": their_file.name}, follow=True)
    assert "upload it again" in page.content.decode() and "confirm_form" not in page.context
    assert their_file.exists() and not LeadImport.objects.exists()

    page = admin_client.post(IMPORT_URL, {**mapping, "campaign": inactive.pk})
    assert page.context["preview_campaign"] == campaign, "the signed token's campaign, not the form's"


def test_a_preview_confirmed_by_another_user_is_refused(admin_client, campaign, tmp_path, temp_folder, import_media):
    mine = preview(admin_client, campaign, tmp_path)
    answer = other_client().post(CONFIRM_URL, mine, follow=True)
    assert "upload the file again" in answer.content.decode()
    assert not LeadImport.objects.exists() and len(os.listdir(temp_folder)) == 1, "the owner's upload is kept"


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
