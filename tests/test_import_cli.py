"""python manage.py import_leads: the JSON it prints, dry runs, and one clear message with a non-zero exit."""

import io
import json

import pytest
from django.core.management import ManagementUtility, call_command

from campaigns.models import Lead, LeadImport

pytestmark = pytest.mark.django_db


def run_cli(*args) -> dict:
    out = io.StringIO()
    call_command("import_leads", *map(str, args), "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.smoke
def test_json_output(campaign, make_leads, lead_file, import_media):
    make_leads(1)
    path = lead_file([["9876543210", "Zoë", "", ""], ["9800000000", "Dup", "", ""], ["nope", "", "", ""]])

    result = run_cli(path, "--campaign", campaign.name)

    lead_import = LeadImport.objects.get()
    assert result == {
        "rows": 3,
        "imported": 1,
        "updated": 0,
        "duplicates": 1,
        "rejected": 1,
        "warnings": 1,
        "errors": [{"line": 4, "reason": "'nope' is not a phone number"}],
        "import_id": lead_import.pk,
        "profile": "",
        "columns": {"Phone": "PhoneNumber", "Name": "Name", "Priority": "Priority", "ExpiryDate": "ExpiryDate"},
    }
    assert Lead.objects.get(phone_number="+919876543210").lead_import == lead_import


def test_dry_run_writes_nothing(campaign, lead_file):
    result = run_cli(lead_file([["9876543210", "A", "", ""]]), "--campaign", campaign.name, "--dry-run")

    assert (result["imported"], result["import_id"]) == (1, None)
    assert not Lead.objects.exists() and not LeadImport.objects.exists()


def test_the_format_can_be_named_when_the_extension_does_not_say(campaign, lead_file, import_media):
    path = lead_file([["9876543210", "A", "", ""]], name="export.dat", delimiter=";")
    assert run_cli(path, "--campaign", campaign.name, "--format", "csv")["imported"] == 1


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda c, f: [f([["A"]], header=["Name"]), "--campaign", c.name], "leads.csv: no phone number column"),
        (lambda c, f: [f([["9876543210"]], header=["Phone"]), "--campaign", "Nope"], "unknown campaign 'Nope'"),
        (lambda c, f: ["/nonexistent/leads.csv", "--campaign", c.name], "is not a readable file"),
    ],
)
def test_a_file_level_problem_exits_non_zero_with_one_message(
    campaign, lead_file, capsys, monkeypatch, make_args, message
):
    argv = ["manage.py", "import_leads", *map(str, make_args(campaign, lead_file))]
    # manage.py closes the database connections on its way out; the test still needs its own.
    monkeypatch.setattr("django.db.connections.close_all", lambda: None)

    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(argv).execute()

    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("CommandError:") and message in err and len(err.splitlines()) == 1
    assert not LeadImport.objects.exists() and not Lead.objects.exists()
