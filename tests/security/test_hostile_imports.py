"""Issue 11, finding 7 (the preview said fine, the import failed) and the sniffer finding: a NUL byte or a lone
surrogate refuses its row, with line and column, in the preview and the import alike; deep JSON is a clear
error, not a RecursionError; caps on rows, columns and cell length; the delimiter guess costs linear time."""

import json

import pytest
from django.urls import reverse

from campaigns.importing.readers import ImportFileError
from campaigns.models import Lead, LeadImport
from campaigns.services import lead_import_create, lead_import_preview, lead_import_run

pytestmark = pytest.mark.django_db


def preview_and_import(campaign, path):
    preview = lead_import_preview(campaign=campaign, path=path, file_name=path.name)
    lead_import = lead_import_create(campaign=campaign, path=path, file_name=path.name)
    report = lead_import_run(lead_import=lead_import)
    return preview, report, LeadImport.objects.get(pk=lead_import.pk)


def test_a_nul_byte_refuses_its_row_in_the_preview_and_the_import_alike(campaign, tmp_path, import_media):
    path = tmp_path / "leads.csv"
    path.write_text("Phone,Name\n9876543210,Asha\n9876543211,Ra\x00vi\n9876543212,Meera\n")

    preview, report, lead_import = preview_and_import(campaign, path)

    assert preview.counts() == report.counts()
    assert (report.imported, report.rejected) == (2, 1)
    assert report.errors == [{"line": 3, "reason": "column 'Name' contains a NUL byte"}]
    assert lead_import.state == LeadImport.State.COMPLETED
    assert set(Lead.objects.values_list("phone_number", flat=True)) == {"+919876543210", "+919876543212"}


def test_a_lone_surrogate_in_json_refuses_its_row_in_both(campaign, tmp_path, import_media):
    path = tmp_path / "leads.json"
    path.write_text('[{"Phone": "9876543210", "Name": "Asha"}, {"Phone": "9876543211", "Name": "R\\ud800vi"}]')

    preview, report, lead_import = preview_and_import(campaign, path)

    assert preview.counts() == report.counts()
    assert report.errors == [{"line": 3, "reason": "column 'Name' contains a lone surrogate (an invalid character)"}]
    assert lead_import.state == LeadImport.State.COMPLETED and Lead.objects.count() == 1


def test_deeply_nested_json_is_a_clear_error(campaign, tmp_path):
    path = tmp_path / "leads.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ImportFileError, match="nests deeper than 32 levels"):
        lead_import_preview(campaign=campaign, path=path, file_name=path.name)
    nested = {"Phone": "9876543210", "Name": "x"}
    for _ in range(40):
        nested = {"Phone": "9876543210", "deeper": nested}
    path.write_text(json.dumps([nested]))
    with pytest.raises(ImportFileError, match="nests deeper"):
        lead_import_preview(campaign=campaign, path=path, file_name=path.name)


def test_deeply_nested_json_in_the_admin_preview_is_a_form_error(admin_client, campaign, tmp_path):
    path = tmp_path / "leads.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with path.open("rb") as f:
        page = admin_client.post(
            reverse("admin:campaigns_lead_import"),
            {"campaign": campaign.pk, "format": "5", "resource": "0", "import_file": f},
        )
    assert page.status_code == 200 and "nests deeper than" in page.content.decode()


def test_a_cell_over_the_cap_refuses_its_row(campaign, tmp_path, settings):
    settings.LEADHUB_IMPORT_MAX_CELL_CHARS = 100
    path = tmp_path / "leads.csv"
    path.write_text(f"Phone,Name\n9876543210,{'x' * 101}\n9876543211,Ravi\n")
    report = lead_import_preview(campaign=campaign, path=path, file_name=path.name)
    assert report.errors == [{"line": 2, "reason": "column 'Name' holds 101 characters; at most 100"}]


def test_too_many_columns_or_rows_are_refused_with_a_message(campaign, tmp_path, settings):
    settings.LEADHUB_SHEET_MAX_COLUMNS = 10
    settings.LEADHUB_SHEET_MAX_ROWS = 5
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["Phone", *(f"c{i}" for i in range(20))]) + "\n")
    with pytest.raises(ImportFileError, match="21 columns; leadhub reads at most 10"):
        lead_import_preview(campaign=campaign, path=wide, file_name=wide.name)
    tall = tmp_path / "tall.csv"
    tall.write_text("Phone\n" + "".join(f"98765432{i:02d}\n" for i in range(10)))
    with pytest.raises(ImportFileError, match="leadhub imports at most 5"):
        lead_import_preview(campaign=campaign, path=tall, file_name=tall.name)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("Phone,Name\n9876543210," + ",".join("x" * 30) + "\n")
    settings.LEADHUB_SHEET_MAX_ROWS = 100
    report = lead_import_preview(campaign=campaign, path=ragged, file_name=ragged.name)
    assert report.errors == [{"line": 2, "reason": "the row has 31 cells; at most 10 columns are read"}]


@pytest.mark.timeout(30)
def test_a_file_built_to_stall_the_delimiter_sniffer_is_read_in_linear_time(campaign, tmp_path):
    """64 KB of `,"` took csv.Sniffer 45 s of CPU on every preview, confirm and run."""
    path = tmp_path / "leads.csv"
    path.write_text(',"' * 32 * 1024 + "\n9876543210\n")
    try:
        lead_import_preview(campaign=campaign, path=path, file_name=path.name)
    except ImportFileError:
        pass  # the unclosed quote is an error of its own; what matters is that the guess came back at once
