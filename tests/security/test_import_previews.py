"""Issue 11, Low: previewed uploads never confirmed stayed in the temp folder forever (customers' numbers)."""

import io
import os
import tempfile
import time

import pytest
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def preview(client, campaign, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Phone,Name\n9876543210,Asha\n")
    with path.open("rb") as f:
        page = client.post(
            reverse("admin:campaigns_lead_import"),
            {"campaign": campaign.pk, "format": "0", "resource": "0", "import_file": f},
        )
    assert page.status_code == 200 and page.context["mapping_form"]


def test_old_unconfirmed_previews_are_swept_fresh_ones_kept(admin_client, campaign, tmp_path, temp_folder, settings):
    preview(admin_client, campaign, tmp_path)
    (abandoned,) = temp_folder.iterdir()
    age = settings.LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS + 60
    os.utime(abandoned, (time.time() - age, time.time() - age))
    unrelated = temp_folder / "someone-elses-file"
    unrelated.write_text("x")
    os.utime(unrelated, (time.time() - age, time.time() - age))

    preview(admin_client, campaign, tmp_path)

    left = set(temp_folder.iterdir())
    assert abandoned not in left and unrelated in left and len(left) == 2


def test_the_sweep_command(admin_client, campaign, tmp_path, temp_folder, settings):
    preview(admin_client, campaign, tmp_path)
    (abandoned,) = temp_folder.iterdir()
    age = settings.LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS + 60
    os.utime(abandoned, (time.time() - age, time.time() - age))
    out = io.StringIO()
    call_command("sweep_import_previews", stdout=out)
    assert "Removed 1" in out.getvalue() and not list(temp_folder.iterdir())
