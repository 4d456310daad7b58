"""Source profiles and the column proposal on real exports' samples (tests/fixtures/sources/): which export a
header is, which column becomes which field, and the phone column found by content but never chosen silently."""

import csv
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from campaigns.importing.columns import EXTRA, IGNORE, MappingError, propose_mapping
from campaigns.importing.encodings import detect_encoding
from campaigns.importing.profiles import recognise
from campaigns.importing.readers import _cell

SOURCES = Path(__file__).parent / "fixtures" / "sources"
MAP = ["PhoneNumber", "Name", "Priority"]


def _table(name: str) -> tuple[list[str], list[list]]:
    path = SOURCES / name
    if path.suffix == ".xlsx":
        rows = [
            [_cell(v) for v in row] for row in CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
        ]
    else:
        found = detect_encoding(path)
        with path.open(encoding=found.codec, newline="") as f:
            sample = f.read(4096)
            f.seek(0)
            rows = list(csv.reader(f, dialect=csv.Sniffer().sniff(sample, delimiters=",\t;")))
    return rows[0], rows[1:]


def _proposal(name: str, **kwargs):
    header, rows = _table(name)
    return propose_mapping(header=header, sample_rows=rows, column_map=MAP, region="IN", **kwargs)


def _fields(proposal) -> dict[str, str]:
    return {c.header: c.field for c in proposal.columns if c.field != IGNORE}


@pytest.mark.parametrize(
    "name, profile, phone, lead_name, extras",
    [
        ("meta_lead_ads.csv", "meta_lead_ads", "phone_number", "full_name",
         {"id", "form_id", "ad_id", "campaign_id", "email"}),
        ("google_ads_lead_form.csv", "google_ads_lead_form", "PHONE_NUMBER", "FULL_NAME",
         {"lead_id", "gcl_id", "campaign_id", "EMAIL"}),
        ("indiamart_lead_manager.csv", "indiamart", "SENDER_MOBILE", "SENDER_NAME",
         {"UNIQUE_QUERY_ID", "SENDER_COMPANY", "SENDER_CITY", "QUERY_PRODUCT_NAME"}),
        ("justdial_leads.xlsx", "justdial", "mobile", "name", {"leadid", "category", "area", "city"}),
        ("google_forms_responses.csv", "google_forms", "WhatsApp Number", "Your Name", {"Timestamp", "Email Address"}),
        ("excel_sheet.xlsx", None, "Mobile No.", "Customer Name", set()),
        ("excel_unicode_text.txt", None, "Mobile", "Name", set()),
    ],
)  # fmt: skip
def test_known_exports_map_their_phone_name_and_ids(name, profile, phone, lead_name, extras):
    proposal = _proposal(name)
    assert (proposal.profile.key if proposal.profile else None) == profile
    fields = _fields(proposal)
    assert fields.pop(phone) == "PhoneNumber"
    assert fields.pop(lead_name) == "Name"
    assert fields == dict.fromkeys(extras, EXTRA)
    assert proposal.phone_problem() is None


def test_indiamart_never_takes_the_sellers_own_number():
    proposal = _proposal("indiamart_lead_manager.csv")
    receiver = next(c for c in proposal.columns if c.header == "RECEIVER_MOBILE")
    assert receiver.field == IGNORE and "IndiaMART" in receiver.reason
    assert (
        "column 'RECEIVER_MOBILE' ignored: never a lead's field in the IndiaMART Lead Manager export"
        in proposal.warnings
    )


def test_the_operators_choice_wins_over_the_profile():
    proposal = _proposal(
        "indiamart_lead_manager.csv", chosen={"SENDER_MOBILE_ALT": "PhoneNumber", "sender company": "Name"}
    )
    fields = _fields(proposal)
    assert fields["SENDER_MOBILE_ALT"] == "PhoneNumber" and fields["SENDER_COMPANY"] == "Name"
    sender = next(c for c in proposal.columns if c.header == "SENDER_MOBILE")
    assert sender.field == IGNORE and sender.reason == "column 'SENDER_MOBILE_ALT' already gives PhoneNumber"


def test_a_remembered_mapping_is_offered_again():
    proposal = _proposal("excel_sheet.xlsx", remembered={"remarks": "Priority", "mobileno": "PhoneNumber"})
    assert _fields(proposal) == {"Mobile No.": "PhoneNumber", "Customer Name": "Name", "Remarks": "Priority"}
    assert next(c for c in proposal.columns if c.header == "Remarks").reason == "your last mapping of this file"


def test_a_single_column_of_phone_numbers_is_proposed_with_its_reason():
    header = ["Customer", "Contact Person Mob", "Remarks"]
    rows = [["A", "98200 12345", "x"], ["B", "+91 98200 12346", "y"], ["C", "n/a", "z"], ["D", "9820012347", ""]]
    proposal = propose_mapping(header=header, sample_rows=rows, column_map=MAP, region="IN")
    column = proposal.columns[1]
    assert column.field == "PhoneNumber" and column.reason == "its values are phone numbers (75% of a sample)"
    assert column.samples == ["98200 12345", "+91 98200 12346", "n/a"]


def test_several_phone_columns_are_reported_never_chosen():
    header = ["Buyer", "Buyer Mob", "Seller Mob", "Notes"]
    rows = [["A", f"98200 1234{i}", "+91-9812345678", "call"] for i in range(5)]
    proposal = propose_mapping(header=header, sample_rows=rows, column_map=MAP, region="IN")
    assert "PhoneNumber" not in proposal.index
    assert [c.header for c in proposal.phone_candidates] == ["Buyer Mob", "Seller Mob"]
    problem = proposal.phone_problem()
    assert "'Buyer Mob' (100% phone numbers)" in problem and "'Seller Mob' (100% phone numbers)" in problem


def test_no_phone_anywhere_names_the_columns():
    proposal = propose_mapping(header=["Buyer", "City"], sample_rows=[["A", "Pune"]], column_map=MAP, region="IN")
    assert "(it has 'Buyer', 'City'), and no column holds mostly phone numbers" in proposal.phone_problem()


def test_a_weaker_source_never_takes_a_field_first():
    # JustDial's "phone" (a landline) comes before "mobile" here and is an alias; the profile's choice still wins.
    header = ["leadid", "leadtype", "prefix", "name", "phone", "mobile", "email", "date", "category", "city", "area"]
    proposal = propose_mapping(header=header, sample_rows=[], column_map=MAP, region="IN")
    assert proposal.profile.key == "justdial"
    assert proposal.index["PhoneNumber"] == header.index("mobile")


@pytest.mark.parametrize(
    "chosen, message",
    [({"NOPE": "PhoneNumber"}, "the file has no column 'NOPE'"), ({"SENDER_CITY": "City"}, "'City' is not a field")],
)
def test_a_choice_naming_nothing_is_an_error(chosen, message):
    with pytest.raises(MappingError, match=message):
        _proposal("indiamart_lead_manager.csv", chosen=chosen)


def test_headers_of_no_known_export_are_not_recognised():
    assert recognise(["Phone", "Name", "Timestamp2"]) is None
    assert recognise(["id", "created_time", "ad_id", "form_id", "platform", "full_name"]).key == "meta_lead_ads"
