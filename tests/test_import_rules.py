"""The import policy, row by row and file by file, through the services the admin, the CLI and the job call."""

import csv
from datetime import date, timedelta

import openpyxl
import pytest
from django.utils import timezone

from campaigns.importing import writers
from campaigns.importing.readers import ImportFileError
from campaigns.models import Campaign, Lead, LeadImport
from campaigns.services import lead_import_create, lead_import_preview, lead_import_run

pytestmark = pytest.mark.django_db

FUTURE = "2099-12-31"


def run_import(campaign, path, **kwargs):
    lead_import = lead_import_create(campaign=campaign, path=path, file_name=path.name, **kwargs)
    report = lead_import_run(lead_import=lead_import)
    return lead_import, report


def rejected_reasons(report):
    return {line: reason for line, reason, _cells in report.rejected_rows}


@pytest.mark.smoke
def test_every_common_way_of_writing_a_number_is_one_number(campaign, lead_file, import_media):
    forms = ["98765 43210", "+91 98765 43210", "098765-43210", "91-9876543210", "0091 9876543210", "(+91) 98765 43210"]
    path = lead_file([[phone, f"Lead {i}", "", ""] for i, phone in enumerate(forms)])

    lead_import, report = run_import(campaign, path)

    assert (report.rows, report.imported, report.duplicates, report.rejected) == (6, 1, 5, 0)
    lead = Lead.objects.get()
    assert (lead.phone_number, lead.name, lead.source, lead.lead_import, lead.source_line) == (
        "+919876543210",
        "Lead 0",
        Lead.Source.IMPORT,
        lead_import,
        2,
    )
    assert [(line, reason) for line, _phone, reason in report.duplicate_rows] == [
        (line, "repeats line 2") for line in range(3, 8)
    ]
    assert report.new_rows == [(2, ["9876543210", "Lead 0", "", ""])]  # sent in the campaign's national form
    lead_import.refresh_from_db()
    assert (lead_import.state, lead_import.rows, lead_import.imported, lead_import.duplicates) == ("completed", 6, 1, 5)


def test_invalid_and_impossible_numbers_reject_the_row(campaign, lead_file, import_media):
    path = lead_file(
        [["12345", "a", "", ""], ["not a phone", "b", "", ""], ["", "c", "", ""], ["98765 4321", "d", "", ""]]
    )

    _, report = run_import(campaign, path)

    reasons = rejected_reasons(report)
    assert (report.rows, report.rejected, report.imported) == (4, 4, 0)
    assert reasons[2] == "'12345' is not a valid number for region IN"
    assert reasons[3] == "'not a phone' is not a phone number"
    assert reasons[4] == "PhoneNumber is empty"
    assert "not a valid number" in reasons[5]
    assert not Lead.objects.exists()


def test_a_number_already_in_the_campaign_is_a_duplicate(campaign, make_leads, lead_file, import_media):
    (existing,) = make_leads(1)
    path = lead_file([[existing.phone_number, "Again", "", ""], ["9876543210", "New", "", ""]])

    _, report = run_import(campaign, path)

    assert (report.imported, report.duplicates) == (1, 1)
    assert report.duplicate_rows == [(2, existing.phone_number, "already in the campaign")]
    existing.refresh_from_db()
    assert existing.name == "Lead 0"


def test_a_campaign_may_update_its_new_leads_instead(campaign, make_leads, lead_file, import_media):
    campaign.update_existing_on_import = True
    campaign.save()
    fresh, sent = make_leads(2)
    Lead.objects.filter(pk=sent.pk).update(status=Lead.Status.SENT)
    path = lead_file([[fresh.phone_number, "Renamed", "7", FUTURE], [sent.phone_number, "Too late", "3", ""]])

    lead_import, report = run_import(campaign, path)

    assert (report.imported, report.updated, report.duplicates) == (0, 1, 1)
    assert report.duplicate_rows == [(3, sent.phone_number, "already in the campaign as a sent lead; not updated")]
    fresh.refresh_from_db()
    sent.refresh_from_db()
    assert (fresh.name, fresh.priority, fresh.expiry_date) == ("Renamed", 7, date(2099, 12, 31))
    assert fresh.lead_import is None  # it still traces back to where it came from
    assert (sent.name, sent.priority) == ("Lead 1", None)
    lead_import.refresh_from_db()
    assert lead_import.updated == 1


def test_an_update_sets_the_files_columns_and_merges_its_extra_columns(account, lead_file, import_media):
    campaign = Campaign.objects.create(
        account=account,
        name="Updating",
        column_map=["PhoneNumber", "Name", "City", "Email"],
        update_existing_on_import=True,
    )
    Lead.objects.create(
        campaign=campaign, phone_number="+919876543210", name="Asha", extra={"City": "Pune", "Email": "a@x"}
    )

    _, report = run_import(campaign, lead_file([["9876543210", "Mumbai"]], header=["Phone", "City"]))

    assert report.updated == 1
    lead = Lead.objects.get()
    assert (lead.name, lead.extra) == ("Asha", {"City": "Mumbai", "Email": "a@x"})


def test_names_are_folded_and_cleaned_with_a_warning_never_rejected(campaign, lead_file, import_media):
    path = lead_file(
        [
            ["9876543210", "José Müller", "", ""],
            ["9876543211", "Ravi @Kumar! <vip>", "", ""],
            ["9876543212", "  Plain   Name ", "", ""],
            ["9876543213", "x" * 250, "", ""],
            ["9876543214", "O'Brien (Jr.) - 50% $ + :", "", ""],
        ]
    )

    _, report = run_import(campaign, path)

    assert (report.imported, report.rejected, report.warnings) == (5, 0, 4)
    names = dict(Lead.objects.values_list("source_line", "name"))
    assert names == {
        2: "Jose Muller",
        3: "Ravi Kumar vip",
        4: "Plain Name",
        5: "x" * 200,
        6: "OBrien (Jr.) - 50% $ + :",
    }
    assert report.warning_list[0] == (2, "Name 'José Müller' is sent as 'Jose Muller'")


def test_priority_is_empty_or_a_whole_number_from_1_to_99(campaign, lead_file, import_media):
    values = ["", "1", "99", "05", "7.0", "0", "100", "5.5", "high", "-3"]
    path = lead_file([[f"98765432{i:02d}", "", value, ""] for i, value in enumerate(values)])

    _, report = run_import(campaign, path)

    assert dict(Lead.objects.values_list("source_line", "priority")) == {2: None, 3: 1, 4: 99, 5: 5, 6: 7}
    assert rejected_reasons(report) == {
        line: f"Priority '{value}' is not a whole number from 1 to 99"
        for line, value in zip(range(7, 12), values[5:], strict=True)
    }


def test_expiry_dates_in_the_formats_people_use_day_first(campaign, lead_file, import_media):
    today = timezone.localdate()
    values = ["", "2099-12-31", "31/12/2099", "31-12-2099", "1/2/2099", today.isoformat()]
    bad = ["2020-01-01", (today - timedelta(days=1)).strftime("%d/%m/%Y"), "31/02/2099", "12/31/2099", "soon"]
    path = lead_file([[f"98765432{i:02d}", "", "", value] for i, value in enumerate(values + bad)])

    _, report = run_import(campaign, path)

    assert dict(Lead.objects.values_list("source_line", "expiry_date")) == {
        2: None,
        3: date(2099, 12, 31),
        4: date(2099, 12, 31),
        5: date(2099, 12, 31),
        6: date(2099, 2, 1),
        7: today,
    }
    reasons = rejected_reasons(report)
    assert reasons[8] == "ExpiryDate 2020-01-01 is in the past"
    assert reasons[9] == f"ExpiryDate {(today - timedelta(days=1)).isoformat()} is in the past"
    for line, value in ((10, "31/02/2099"), (11, "12/31/2099"), (12, "soon")):
        assert reasons[line] == f"ExpiryDate '{value}' is not a date (YYYY-MM-DD, DD/MM/YYYY or DD-MM-YYYY, day first)"


def test_a_row_longer_than_cloudagent_takes_is_rejected(account, lead_file, import_media):
    campaign = Campaign.objects.create(account=account, name="Notes", column_map=["PhoneNumber", "Name", "Notes"])
    headers = len("PhoneNumber") + len("Name") + len("Notes")
    fits = 2000 - headers - len("9876543210") - len("Al")
    path = lead_file(
        [["9876543210", "Al", "n" * fits], ["9876543211", "Al", "n" * (fits + 1)]], header=["Phone", "Name", "Notes"]
    )

    _, report = run_import(campaign, path)

    assert report.imported == 1
    assert rejected_reasons(report) == {3: "row is 2001 characters with its headers; CloudAgent allows at most 2000"}
    assert Lead.objects.get().extra == {"Notes": "n" * fits}


def test_columns_the_campaign_map_names_go_to_extra_the_others_are_ignored_once(account, lead_file, import_media):
    campaign = Campaign.objects.create(
        account=account, name="Extras", column_map=["PhoneNumber", "Name", "City", "AgentId", "skill"]
    )
    header = ["Mobile No.", "Customer_Name", "city", "Agent ID", "SKILL", "Priority", "Favourite colour", "", "phone"]
    rows = [
        ["98765 43210", "Asha", "Pune", "1001", "sales", "5", "blue", "x", "9876543211"],
        ["98765 43212", "Ravi", "", "1002", "", "", "red", "", ""],
    ]

    _, report = run_import(campaign, lead_file(rows, header=header))

    leads = {lead.phone_number: lead for lead in Lead.objects.all()}
    asha, ravi = leads["+919876543210"], leads["+919876543212"]
    assert (asha.name, asha.agent_id, asha.skill, asha.extra, asha.priority) == (
        "Asha",
        "1001",
        "sales",
        {"City": "Pune"},
        None,
    )
    assert (ravi.extra, ravi.skill) == ({}, "")
    assert [message for _line, message in report.warning_list] == [
        "column 'Priority' is not in the campaign's column map; ignored",
        "column 'Favourite colour' is not in the campaign's column map; ignored",
        "column 8 has no header; ignored",
        "column 'phone' ignored: column 'Mobile No.' already gives PhoneNumber",
    ]
    assert report.warnings == 4


def test_blank_rows_are_ignored_and_line_numbers_stay_those_of_the_file(campaign, lead_file, import_media):
    path = lead_file([["", "", "", ""], ["9876543210", "A", "", ""], ["  ", " ", "", ""], ["bad", "B", "", ""]])

    _, report = run_import(campaign, path)

    assert (report.rows, report.imported, report.rejected) == (2, 1, 1)
    assert Lead.objects.get().source_line == 3
    assert list(rejected_reasons(report)) == [5]


def test_line_numbers_are_physical_lines_when_a_quoted_cell_spans_several(campaign, lead_file, import_media):
    path = lead_file([["9876543210", "Two\nline name", "", ""], ["bad", "B", "", ""], ["9876543211", "C", "", ""]])

    _, report = run_import(campaign, path)

    assert list(rejected_reasons(report)) == [4], "header on 1, the two-line row on 2-3, the bad one on 4"
    assert sorted(Lead.objects.values_list("source_line", flat=True)) == [2, 5]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (
            ["Name", "Email"],
            [["A", "a@example.com"]],
            "no phone number column: the header row needs one of PhoneNumber",
        ),
        (None, [], "the file is empty: it has no header row"),
        (None, [["", ""], ["", ""]], "the file is empty: it has no header row"),
    ],
)
def test_a_file_level_problem_is_one_message_and_writes_nothing(
    campaign, lead_file, import_media, header, rows, message
):
    path = lead_file(rows, header=header)

    for attempt in (
        lambda: lead_import_preview(campaign=campaign, path=path, file_name=path.name),
        lambda: lead_import_create(campaign=campaign, path=path, file_name=path.name),
    ):
        with pytest.raises(ImportFileError, match=message):
            attempt()
    assert not LeadImport.objects.exists() and not Lead.objects.exists()


def test_unreadable_files_and_unknown_formats(campaign, tmp_path):
    broken = tmp_path / "leads.xlsx"
    broken.write_bytes(b"this is no spreadsheet")
    with pytest.raises(ImportFileError, match="cannot be read as a spreadsheet"):
        lead_import_preview(campaign=campaign, path=broken, file_name=broken.name)
    (tmp_path / "leads.json").write_text('{"Phone": "9876543210"}')
    with pytest.raises(ImportFileError, match="must hold a list of objects"):
        lead_import_preview(campaign=campaign, path=tmp_path / "leads.json", file_name="leads.json")
    with pytest.raises(ImportFileError, match="not a format leadhub reads"):
        lead_import_preview(campaign=campaign, path=broken, file_name="leads.pdf")


def test_the_preview_writes_nothing(campaign, make_leads, lead_file):
    make_leads(1)
    path = lead_file([["9876543210", "New", "", ""], ["+919800000000", "Dup", "", ""], ["bad", "", "", ""]])

    report = lead_import_preview(campaign=campaign, path=path, file_name=path.name)

    assert (report.rows, report.imported, report.duplicates, report.rejected) == (3, 1, 1, 1)
    assert Lead.objects.count() == 1 and not LeadImport.objects.exists()


@pytest.mark.parametrize("name", ["leads.csv", "leads.tsv", "leads.xlsx", "leads.xls", "leads.ods", "leads.json"])
def test_every_format_reads_the_same(campaign, lead_file, import_media, name):
    expiry = date(2099, 12, 31)
    spreadsheet = name.endswith(("xlsx", "xls", "ods"))
    rows = [
        [
            9876543210 if spreadsheet else "9876543210",
            "Asha",
            3 if spreadsheet else "3",
            expiry if spreadsheet else "31/12/2099",
        ],
        ["+91 98765 43211", "Ravi", "", ""],
        ["bad", "Bad", "", ""],
    ]

    _, report = run_import(campaign, lead_file(rows, name=name))

    assert (report.rows, report.imported, report.rejected) == (3, 2, 1)
    lead = Lead.objects.get(source_line=2)
    assert (lead.phone_number, lead.name, lead.priority, lead.expiry_date) == ("+919876543210", "Asha", 3, expiry)
    assert Lead.objects.get(source_line=3).phone_number == "+919876543211"
    assert list(rejected_reasons(report)) == [4]


def test_a_spreadsheet_starting_below_row_1_keeps_its_row_numbers(campaign, tmp_path, import_media):

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet["B3"], sheet["C3"] = "Phone", "Name"
    sheet["B4"], sheet["C4"] = 9876543210.0, "Asha"
    path = tmp_path / "offset.xlsx"
    workbook.save(path)

    _, report = run_import(campaign, path)

    assert report.imported == 1
    assert Lead.objects.get().source_line == 4


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-8", "José"), ("utf-8-sig", "José"), ("cp1252", "José – Ltd"), ("latin-1", "José\x81")],
)
def test_encodings(campaign, lead_file, import_media, encoding, name):
    # 3,000 plain rows first: the byte that is not UTF-8 comes long after any sample a sniffer reads.
    rows = [[f"98{i:08d}", f"Lead {i}", "", ""] for i in range(3000)] + [["9876543210", name, "", ""]]

    _, report = run_import(campaign, lead_file(rows, encoding=encoding))

    assert (report.imported, report.rejected) == (3001, 0)
    assert Lead.objects.get(phone_number="+919876543210").name == {"José": "Jose", "José – Ltd": "Jose - Ltd"}.get(
        name, "Jose"
    )


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(campaign, lead_file, import_media, delimiter):
    path = lead_file(
        [["98765 43210", "Asha, Rao", "2", ""], ["9876543211", "Ravi; K", "", "01/01/2099"]], delimiter=delimiter
    )

    _, report = run_import(campaign, path)

    assert (report.imported, report.rejected, report.warnings) == (2, 0, 2)  # CloudAgent refuses "," and ";"
    assert set(Lead.objects.values_list("priority", flat=True)) == {2, None}


def test_rejected_rows_are_kept_in_a_file_ready_to_fix_and_reimport(campaign, lead_file, import_media):
    rows = [["bad", "Asha", "", ""], ["9876543210", "Ravi", "500", ""], ["9876543211", "Ok", "", ""]]
    rows += [[f"{i}", "", "", ""] for i in range(250)]

    lead_import, report = run_import(campaign, lead_file(rows))

    lead_import.refresh_from_db()
    assert (lead_import.rejected, len(lead_import.errors)) == (252, 200)
    assert lead_import.errors[:2] == [
        {"line": 2, "reason": "'bad' is not a phone number"},
        {"line": 3, "reason": "Priority '500' is not a whole number from 1 to 99"},
    ]
    with lead_import.rejected_file.open("rb") as f:
        table = list(csv.reader(f.read().decode("utf-8-sig").splitlines()))
    assert table[0] == ["Phone", "Name", "Priority", "ExpiryDate", "line", "reason"]
    assert table[1] == ["bad", "Asha", "", "", "2", "'bad' is not a phone number"]
    assert len(table) == 253
    # Fixed, the file goes back in: its line and reason columns are only warned about.
    with lead_import.rejected_file.open("rb") as f, open(import_media / "fixed.csv", "wb") as out:
        out.write(f.read().replace(b"bad", b"9876543219").replace(b",500,", b",5,"))
    _, again = run_import(campaign, import_media / "fixed.csv")
    assert (again.imported, again.rejected, again.warnings) == (2, 250, 2)


def test_a_big_file_is_checked_in_a_child_process_with_the_same_outcome(campaign, lead_file, monkeypatch):
    """Rows checked in a child (a big file) give the report rows checked here give: repeats across chunks,
    rejections and warnings included."""
    rows = [["98765 43210", "Zoë", "", ""], ["bad", "B", "", ""], ["+91 98765 43210", "C", "", ""]]
    rows += [[f"98765{i:05d}", f"N{i}", "5", ""] for i in range(20)] + [["9876500003", "again", "", ""]]
    path = lead_file(rows)

    def outcome():
        report = lead_import_preview(campaign=campaign, path=path, file_name=path.name)
        return report.counts(), report.duplicate_rows, report.rejected_rows, report.warning_list, report.new_rows

    monkeypatch.setattr(writers, "CHUNK_ROWS", 4)
    inline = outcome()
    monkeypatch.setattr(writers, "PARALLEL_ROWS", 1)
    assert outcome() == inline
    counts, duplicates, rejected, warnings, _new = inline
    assert counts["rows"] == 24 and counts["rejected"] == 1 and counts["imported"] == 21
    assert [(line, reason) for line, _phone, reason in duplicates] == [(4, "repeats line 2"), (25, "repeats line 8")]
    assert [line for line, _reason, _cells in rejected] == [3]
    assert warnings == [(2, "Name 'Zoë' is sent as 'Zoe'")]


def test_a_big_file_checked_in_a_child_is_written_whole(campaign, lead_file, import_media, monkeypatch):
    monkeypatch.setattr(writers, "CHUNK_ROWS", 7)
    monkeypatch.setattr(writers, "PARALLEL_ROWS", 1)
    rows = [[f"98765{i % 40:05d}", f"N{i}", "", ""] for i in range(50)] + [["12", "short", "", ""]]
    _lead_import, report = run_import(campaign, lead_file(rows))
    assert (report.imported, report.duplicates, report.rejected) == (40, 10, 1)
    assert Lead.objects.filter(campaign=campaign).count() == 40
    assert report.duplicate_rows[0] == (42, "+919876500000", "repeats line 2")
