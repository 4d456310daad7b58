"""The import through the real admin views: upload, preview, confirm, background progress, rejected rows, undo,
and the export with its formula escaping."""

import csv
import io

import django_rq
import openpyxl
import pytest
from django.urls import reverse
from rq import SimpleWorker

import campaigns.importing.writers
import campaigns.services
from campaigns.models import Lead, LeadImport
from tests.fixtures.html import table_rows

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("admin:campaigns_lead_import")
CONFIRM_URL = reverse("admin:campaigns_lead_process_import")
CSV_FORMAT = "0"  # LeadAdmin.import_formats[0]


def upload_file(client, campaign, path, fmt=CSV_FORMAT):
    """Step 1: the upload, answered by the column-mapping step."""
    with path.open("rb") as f:
        return client.post(IMPORT_URL, {"campaign": campaign.pk, "format": fmt, "resource": "0", "import_file": f})


def mapping_data(step, **choices) -> dict:
    """The mapping step's form as the operator submits it: the pre-filled fields, `column_N=FIELD` changed."""
    form = step.context["mapping_form"]
    data = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}
    return {**data, **choices, "column_mapping": "1"}


def upload(client, campaign, path, fmt=CSV_FORMAT, **choices):
    """Upload, keep (or change) the proposed mapping: the preview."""
    step = upload_file(client, campaign, path, fmt)
    if "mapping_form" not in step.context:
        return step
    return client.post(IMPORT_URL, mapping_data(step, **choices))


def confirm(client, preview):
    form = preview.context["confirm_form"]
    return client.post(CONFIRM_URL, {name: form.initial[name] for name in form.fields})


@pytest.mark.smoke
def test_preview_shows_every_row_and_writes_nothing_then_confirm_imports(
    admin_client, campaign, make_leads, lead_file, import_media
):
    make_leads(1)  # +919800000000
    path = lead_file(
        [
            ["9876543210", "Asha", "", ""],
            ["+91 98000 00000", "Already here", "", ""],
            ["12345", "Bad number", "", ""],
            ["9876543211", "José", "200", ""],
            ["98765-43210", "Again", "", ""],
        ]
    )
    assert "Import leads" in admin_client.get(IMPORT_URL).content.decode()

    preview = upload(admin_client, campaign, path)

    assert preview.status_code == 200
    page = preview.content.decode()
    report = preview.context["report"]
    assert (report.rows, report.imported, report.duplicates, report.rejected) == (5, 1, 2, 2)
    shown = [row[:3] for row in table_rows(page)]
    assert ["4", "'12345' is not a valid number for region IN"] in [row[:2] for row in shown]
    assert ["5", "Priority '200' is not a whole number from 1 to 99"] in [row[:2] for row in shown]
    assert ["6", "+919876543210", "repeats line 2"] in shown
    assert "already in the campaign" in page and "Confirm import" in page
    assert Lead.objects.count() == 1 and not LeadImport.objects.exists()

    done = confirm(admin_client, preview)

    lead_import = LeadImport.objects.get()
    assert done.url == reverse("admin:campaigns_leadimport_change", args=[lead_import.pk])
    assert (lead_import.state, lead_import.imported, lead_import.duplicates, lead_import.rejected) == (
        "completed",
        1,
        2,
        2,
    )
    assert lead_import.created_by.username == "admin" and lead_import.file_name == "leads.csv"
    assert Lead.objects.get(phone_number="+919876543210").lead_import == lead_import
    page = admin_client.get(done.url).content.decode()
    assert "5 rows: 1 imported, 2 duplicates, 2 rejected" in page
    assert "Download rejected rows" in page and 'http-equiv="refresh"' not in page
    download = admin_client.get(reverse("admin:campaigns_leadimport_rejected", args=[lead_import.pk]))
    table = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert table[0][-2:] == ["line", "reason"] and [row[-2] for row in table[1:]] == ["4", "5"]
    # The file was confirmed once; a second confirm finds nothing to import.
    again = confirm(admin_client, preview)
    assert again.url == IMPORT_URL and LeadImport.objects.count() == 1


def test_a_file_level_problem_is_shown_on_the_form(admin_client, campaign, lead_file):
    preview = upload(admin_client, campaign, lead_file([["Asha"]], header=["Name"]))

    assert "no phone number column" in preview.content.decode()
    assert "confirm_form" not in preview.context and not LeadImport.objects.exists()


def test_a_spreadsheet_goes_through_the_admin_too(admin_client, campaign, lead_file, import_media):
    path = lead_file([[9876543210.0, "Asha", 5, None]], name="leads.xlsx")

    preview = upload(admin_client, campaign, path, fmt="1")
    confirm(admin_client, preview)

    assert Lead.objects.get().priority == 5


@pytest.mark.smoke
def test_a_large_file_runs_in_the_background_with_progress(
    admin_client,
    campaign,
    lead_file,
    import_media,
    redis_conn,
    settings,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    settings.LEADHUB_IMPORT_BACKGROUND_ROWS = 10
    monkeypatch.setattr(campaigns.importing.writers, "CHUNK_ROWS", 10)
    seen = []
    real_import_sheet = campaigns.services.import_sheet

    def watched(**kwargs):
        if kwargs["dry_run"]:  # the preview
            return real_import_sheet(**kwargs)
        progress = kwargs["progress"]

        def recorded(done, expected):
            progress(done, expected)
            seen.append(LeadImport.objects.values_list("state", "rows_processed").get())

        return real_import_sheet(**{**kwargs, "progress": recorded})

    monkeypatch.setattr(campaigns.services, "import_sheet", watched)
    path = lead_file([[f"98765432{i:02d}", f"Lead {i}", "", ""] for i in range(25)])

    # A big file's preview runs in the background too, with progress, then waits for Confirm on the import's page.
    with django_capture_on_commit_callbacks(execute=True):
        previewing = upload(admin_client, campaign, path)
    lead_import = LeadImport.objects.get()
    assert previewing.url == reverse("admin:campaigns_leadimport_change", args=[lead_import.pk])
    assert lead_import.state == "previewing"
    page = admin_client.get(previewing.url).content.decode()
    assert 'http-equiv="refresh"' in page and "The preview is running in the background" in page
    queue = django_rq.get_queue("imports")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    lead_import.refresh_from_db()
    assert (lead_import.state, lead_import.preview["imported"]) == ("previewed", 25)
    page = admin_client.get(previewing.url).content.decode()
    assert 'http-equiv="refresh"' not in page and "Confirm import" in page and "<td>Lead 0</td>" in page
    assert not Lead.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(reverse("admin:campaigns_leadimport_confirm", args=[lead_import.pk]))

    lead_import.refresh_from_db()
    assert (lead_import.state, lead_import.rows) == ("pending", 25)
    page = admin_client.get(done.url).content.decode()
    assert 'http-equiv="refresh"' in page and 'value="0"' in page
    assert queue.count == 1 and not Lead.objects.exists()

    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert seen == [("running", 10), ("running", 20), ("running", 25)]
    lead_import.refresh_from_db()
    assert (lead_import.state, lead_import.rows_processed, lead_import.imported) == ("completed", 25, 25)
    page = admin_client.get(done.url).content.decode()
    assert 'http-equiv="refresh"' not in page and 'value="100"' in page and "25 rows: 25 imported" in page


def imported(campaign, lead_file, rows):
    path = lead_file(rows)
    lead_import = campaigns.services.lead_import_create(campaign=campaign, path=path, file_name=path.name)
    campaigns.services.lead_import_run(lead_import=lead_import)
    return lead_import


def test_undo_deletes_the_imports_leads_while_all_are_new(admin_client, campaign, make_leads, lead_file, import_media):
    make_leads(1)
    lead_import = imported(campaign, lead_file, [["9876543210", "A", "", ""], ["9876543211", "B", "", ""]])
    url = reverse("admin:campaigns_leadimport_undo", args=[lead_import.pk])

    assert "deletes the 2 leads it created" in admin_client.get(url).content.decode()
    done = admin_client.post(url, follow=True)

    assert "Import undone: 2 leads deleted." in done.content.decode()
    lead_import.refresh_from_db()
    assert lead_import.state == "undone" and Lead.objects.count() == 1
    assert "Only a completed or failed import" in admin_client.post(url, follow=True).content.decode()


def test_undo_is_refused_once_a_lead_moved_on(admin_client, campaign, lead_file, import_media):
    lead_import = imported(campaign, lead_file, [["9876543210", "A", "", ""], ["9876543211", "B", "", ""]])
    Lead.objects.filter(phone_number="+919876543211").update(status=Lead.Status.SENT)

    done = admin_client.post(reverse("admin:campaigns_leadimport_undo", args=[lead_import.pk]), follow=True)

    assert "1 of this import&#x27;s leads are no longer new" in done.content.decode()
    lead_import.refresh_from_db()
    assert lead_import.state == "completed" and Lead.objects.count() == 2


@pytest.mark.parametrize("fmt", ["0", "1"])
def test_export_escapes_spreadsheet_formulas(admin_client, campaign, make_leads, fmt):
    (lead,) = make_leads(1)
    Lead.objects.filter(pk=lead.pk).update(name='=HYPERLINK("http://x")', status_reason="@SUM(A1)", priority=5)
    fields = admin_client.get(reverse("admin:campaigns_lead_export")).context["form"].fields
    data = {"format": fmt, "resource": "0", **{name: "on" for name in fields if name.startswith("leadexportresource_")}}

    response = admin_client.post(reverse("admin:campaigns_lead_export"), data)
    content = b"".join(response.streaming_content) if response.streaming else response.content

    if fmt == "0":
        rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(content)).active
        header, *values = list(sheet.iter_rows(values_only=True))
        rows = [dict(zip(header, (str(v) if v is not None else "" for v in row), strict=True)) for row in values]
        assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    (row,) = rows
    assert row["name"] == '\'=HYPERLINK("http://x")'
    assert row["status_reason"] == "'@SUM(A1)"
    assert row["phone_number"] == "+919800000000"  # a signed number is data, not a formula
    assert (row["campaign"], row["status"], row["priority"]) == ("Demo_Outbound", "new", "5")
    assert "transaction_id" in row


def test_export_streams_only_the_chosen_columns(admin_client, campaign, make_leads):
    make_leads(3)
    data = {"format": "0", "resource": "0", "leadexportresource_phone_number": "on", "leadexportresource_status": "on"}

    response = admin_client.post(reverse("admin:campaigns_lead_export"), data)

    assert response.streaming, "a million leads must not be built in memory before the first byte"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["phone_number", "status"]
    assert sorted(rows[1:]) == [["+919800000000", "new"], ["+919800000001", "new"], ["+919800000002", "new"]]


def test_choosing_between_two_columns_with_the_same_header_is_refused_not_misread(
    admin_client, campaign, lead_file, import_media
):
    """The operator's choice travels as header -> field, so two columns headed 'Phone' got one choice (the last
    column's), applied to the first: picking the second imported the first's numbers, with nothing said (and
    keeping the proposal lost the phone column). The step now asks for a rename instead."""
    path = lead_file([["1111", "9876543210"], ["2222", "9876543211"]], header=["Phone", "Phone"])
    step = upload_file(admin_client, campaign, path)
    answer = admin_client.post(IMPORT_URL, mapping_data(step, column_0="ignore", column_1="PhoneNumber"))

    assert "confirm_form" not in answer.context
    errors = answer.context["mapping_form"].non_field_errors()
    assert any("same header" in error for error in errors), errors
    assert not Lead.objects.exists()


def test_a_garbled_format_choice_falls_back_to_the_file_name_not_a_500(admin_client, campaign, lead_file, import_media):
    """The mapping and confirmation steps carry the format choice in a hidden field, read with int() and an index:
    a value that was not one of the choices answered 500."""
    step = upload_file(admin_client, campaign, lead_file([["9876543210", "Asha", "", ""]]))
    preview = admin_client.post(IMPORT_URL, {**mapping_data(step), "format": "x"})
    assert preview.status_code == 200 and "confirm_form" in preview.context
    form = preview.context["confirm_form"]
    done = admin_client.post(CONFIRM_URL, {**{name: form.initial[name] for name in form.fields}, "format": "99"})
    assert done.status_code == 302
    assert Lead.objects.filter(phone_number="+919876543210").exists()
