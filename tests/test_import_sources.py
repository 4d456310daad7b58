"""The exports lead sources really produce (tests/fixtures/sources/) import with the right counts: the export is
recognised, its phone and name columns found, its ids kept as extra fields, whatever its encoding."""

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.models import ColumnMappingChoice, Lead

pytestmark = pytest.mark.django_db

SOURCES = Path(__file__).parent / "fixtures" / "sources"


def run_cli(*args) -> dict:
    out = io.StringIO()
    call_command("import_leads", *map(str, args), "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def source(tmp_path):
    """A copy of a sample export, under its own name."""

    def copy(name: str) -> Path:
        return Path(shutil.copy(SOURCES / name, tmp_path / name))

    return copy


@pytest.mark.parametrize(
    "name, profile, phone, imported, duplicates, rejected",
    [
        ("meta_lead_ads.csv", "Meta Lead Ads download", "phone_number", 6, 1, 1),
        ("google_ads_lead_form.csv", "Google Ads lead form download", "PHONE_NUMBER", 4, 0, 1),
        ("indiamart_lead_manager.csv", "IndiaMART Lead Manager export", "SENDER_MOBILE", 4, 1, 1),
        ("justdial_leads.xlsx", "JustDial lead export", "mobile", 4, 0, 1),
        ("excel_sheet.xlsx", "", "Mobile No.", 3, 1, 1),
        ("google_forms_responses.csv", "Google Forms responses (Google Sheets)", "WhatsApp Number", 3, 1, 0),
        ("excel_unicode_text.txt", "", "Mobile", 3, 0, 0),
    ],
)
def test_each_export_imports_from_the_cli(
    campaign, source, import_media, name, profile, phone, imported, duplicates, rejected
):
    result = run_cli(source(name), "--campaign", campaign.name)

    assert (result["imported"], result["duplicates"], result["rejected"]) == (imported, duplicates, rejected)
    assert result["profile"] == profile
    assert result["columns"][phone] == "PhoneNumber"
    assert Lead.objects.filter(campaign=campaign).count() == imported


def test_meta_names_in_any_script_and_ids_kept(campaign, source, import_media):
    run_cli(source("meta_lead_ads.csv"), "--campaign", campaign.name)

    lead = Lead.objects.get(phone_number="+919876543211")
    assert lead.name == "rvi shrmaa"  # Devanagari folded to the ASCII CloudAgent takes
    assert lead.extra == {
        "id": "l:1893450000000001",
        "ad_id": "ag:120214000000000101",
        "campaign_id": "c:120214000000000103",
        "form_id": "f:982341000000001",
        "email": "ravi.sharma@example.com",
    }


def test_indiamart_sellers_number_is_never_imported(campaign, source, import_media):
    run_cli(source("indiamart_lead_manager.csv"), "--campaign", campaign.name)
    assert not Lead.objects.filter(phone_number="+919812345678").exists()


def test_column_choice_overrides_the_profile_and_is_remembered(campaign, source, import_media):
    path = source("indiamart_lead_manager.csv")
    result = run_cli(path, "--campaign", campaign.name, "--column", "PhoneNumber=SENDER_MOBILE_ALT", "--dry-run")

    assert result["columns"]["SENDER_MOBILE_ALT"] == "PhoneNumber"
    assert result["imported"] == 2  # only two buyers gave a second mobile
    assert not ColumnMappingChoice.objects.exists(), "a dry run remembers nothing"

    run_cli(path, "--campaign", campaign.name, "--column", "PhoneNumber=SENDER_MOBILE_ALT")
    assert ColumnMappingChoice.objects.get().mapping["sendermobilealt"] == "PhoneNumber"
    assert run_cli(path, "--campaign", campaign.name, "--dry-run")["columns"]["SENDER_MOBILE_ALT"] == "PhoneNumber"


def test_no_phone_column_names_the_candidates(campaign, tmp_path):
    path = tmp_path / "buyers.csv"
    path.write_text("Buyer,Buyer Mob,Seller Mob\nA,98200 12345,+91-9812345678\nB,98200 12346,+91-9812345678\n")
    with pytest.raises(CommandError) as caught:
        run_cli(path, "--campaign", campaign.name)
    message = str(caught.value)
    assert "'Buyer Mob' (100% phone numbers), 'Seller Mob' (100% phone numbers)" in message
    assert message.endswith("choose one with --column PhoneNumber=HEADER")


@pytest.mark.parametrize(
    "pair, message",
    [
        ("PhoneNumber", "--column takes FIELD=HEADER"),
        ("PhoneNumber=Nope", "the file has no column 'Nope'"),
        ("City=SENDER_CITY", "'City' is not a field of this campaign"),
    ],
)
def test_a_bad_column_choice_is_one_clear_message(campaign, source, pair, message):
    with pytest.raises(CommandError, match=message):
        run_cli(source("indiamart_lead_manager.csv"), "--campaign", campaign.name, "--column", pair)
