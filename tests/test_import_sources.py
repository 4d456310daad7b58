"""The exports lead sources really produce (tests/fixtures/sources/) import with the right counts: the export is
recognised, its phone and name columns found, its ids kept as extra fields, whatever its encoding."""

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from campaigns.models import ColumnMappingChoice, Lead, LeadImport

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


# ------------------------------------------------------------------------------------------- the admin's steps

IMPORT_URL = reverse("admin:campaigns_lead_import")
CONFIRM_URL = reverse("admin:campaigns_lead_process_import")
FORMATS = {".csv": "0", ".txt": "0", ".xlsx": "1"}  # LeadAdmin.import_formats: CSV, XLSX, ...


def upload_file(client, campaign, path):
    with path.open("rb") as f:
        return client.post(
            IMPORT_URL, {"campaign": campaign.pk, "format": FORMATS[path.suffix], "resource": "0", "import_file": f}
        )


def submit_mapping(client, step, **choices):
    form = step.context["mapping_form"]
    data = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}
    return client.post(IMPORT_URL, {**data, **choices, "column_mapping": "1"})


def confirm(client, preview):
    form = preview.context["confirm_form"]
    return client.post(CONFIRM_URL, {name: form.initial[name] for name in form.fields})


@pytest.mark.parametrize(
    "name, imported, duplicates, rejected",
    [
        ("meta_lead_ads.csv", 6, 1, 1),
        ("google_ads_lead_form.csv", 4, 0, 1),
        ("indiamart_lead_manager.csv", 4, 1, 1),
        ("justdial_leads.xlsx", 4, 0, 1),
        ("excel_sheet.xlsx", 3, 1, 1),
        ("google_forms_responses.csv", 3, 1, 0),
        ("excel_unicode_text.txt", 3, 0, 0),
    ],
)
def test_each_export_imports_from_the_admin(
    admin_client, campaign, source, import_media, name, imported, duplicates, rejected
):
    step = upload_file(admin_client, campaign, source(name))
    preview = submit_mapping(admin_client, step)
    report = preview.context["report"]
    assert (report.imported, report.duplicates, report.rejected) == (imported, duplicates, rejected)

    confirm(admin_client, preview)

    lead_import = LeadImport.objects.get()
    assert (lead_import.state, lead_import.imported, lead_import.rejected) == ("completed", imported, rejected)
    assert Lead.objects.filter(campaign=campaign).count() == imported


def test_the_mapping_step_lists_every_column_with_samples_and_a_proposed_field(admin_client, campaign, source):
    step = upload_file(admin_client, campaign, source("indiamart_lead_manager.csv"))

    page = step.content.decode()
    assert "Recognised: <strong>IndiaMART Lead Manager export</strong>" in page
    form = step.context["mapping_form"]
    header = step.context["proposal"].columns
    assert len([n for n in form.fields if n.startswith("column_")]) == len(header) == 22
    fields = {form.fields[f"column_{c.position}"].label: form.fields[f"column_{c.position}"].initial for c in header}
    assert (fields["SENDER_MOBILE"], fields["SENDER_NAME"], fields["RECEIVER_MOBILE"]) == (
        "PhoneNumber",
        "Name",
        "ignore",
    )
    assert fields["UNIQUE_QUERY_ID"] == "extra"
    assert "+91-9824012345 · +91-9443012345 · +91-9811012345" in page
    assert '<select name="column_4"' in page and 'value="Preview import"' in page
    assert not LeadImport.objects.exists()


def test_the_operators_mapping_is_used_shown_and_offered_next_time(admin_client, campaign, source, import_media):
    path = source("indiamart_lead_manager.csv")
    step = upload_file(admin_client, campaign, path)
    header = [c.header for c in step.context["proposal"].columns]
    alt, phone = header.index("SENDER_MOBILE_ALT"), header.index("SENDER_MOBILE")

    preview = submit_mapping(admin_client, step, **{f"column_{alt}": "PhoneNumber", f"column_{phone}": "ignore"})

    assert preview.context["report"].imported == 2
    assert "<td>SENDER_MOBILE_ALT</td><td>PhoneNumber</td><td>your choice</td>" in preview.content.decode()
    confirm(admin_client, preview)
    assert LeadImport.objects.get().column_choice["SENDER_MOBILE_ALT"] == "PhoneNumber"

    again = upload_file(admin_client, campaign, path)
    form = again.context["mapping_form"]
    assert form.fields[f"column_{alt}"].initial == "PhoneNumber"
    assert form.fields[f"column_{alt}"].help_text == "your last mapping of this file"


def test_a_mapping_without_a_phone_or_with_a_field_twice_is_refused(admin_client, campaign, source):
    step = upload_file(admin_client, campaign, source("excel_sheet.xlsx"))
    header = [c.header for c in step.context["proposal"].columns]
    phone, city = header.index("Mobile No."), header.index("City")

    no_phone = submit_mapping(admin_client, step, **{f"column_{phone}": "ignore"})
    assert "Choose the column that holds the phone numbers" in no_phone.content.decode()
    twice = submit_mapping(admin_client, step, **{f"column_{city}": "Name"})
    assert "Each field can come from one column only: Name chosen twice." in twice.content.decode()
    assert "report" not in twice.context


def test_several_phone_columns_are_offered_not_chosen(admin_client, campaign, tmp_path):
    path = tmp_path / "buyers.csv"
    path.write_text("Buyer,Buyer Mob,Seller Mob\nA,98200 12345,+91-9812345678\nB,98200 12346,+91-9812345678\n")

    step = upload_file(admin_client, campaign, path)

    assert "several columns hold phone numbers: &#x27;Buyer Mob&#x27; (100% phone numbers)" in step.content.decode()
    form = step.context["mapping_form"]
    assert [form.fields[f"column_{i}"].initial for i in range(3)] == ["ignore", "ignore", "ignore"]
    preview = submit_mapping(admin_client, step, column_1="PhoneNumber")
    assert preview.context["report"].imported == 2
