"""Lead import benchmark (issue 6): leadhub's streaming import against django-import-export, on PostgreSQL.

A 100,000-row CSV and a 100,000-row XLSX with messy phone numbers (spaces, +91, 0, 0091, brackets, Excel floats;
~8% already in the campaign, ~1% repeated in the file, ~2% invalid) are imported into campaigns that already
hold 100,000 leads; then django-import-export's stock ModelResource (5,000-row slice) and its best tuned
configuration (use_bulk, skip_diff, force_init_instance, batch_size 1000; 20,000-row slice) import rows of the
same data into the same model. Both baselines get only rows that are new, valid and unique (their best case: the
tuned one cannot skip duplicates at all) and normalise phones with the same normalize_phone.

Every measurement runs in a subprocess of its own; peak memory is that process's ru_maxrss (the whole Python
process: interpreter, Django, the file and the import). 50k and 100k-row files show whether memory grows.

`run(report)` calls report(section, name, value) per figure; `python bench/bench_import.py` prints a table.
Database: DATABASE_URL if it is PostgreSQL (the bench's campaigns are removed afterwards), else a database
leadhub_bench on postgres://postgres@127.0.0.1:5432, created and dropped here.
"""

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgres://postgres@127.0.0.1:5432"
BENCH_DB = "leadhub_bench"
EXISTING = 100_000
ROWS = 100_000
HALF = 50_000
STOCK_ROWS = 5_000
TUNED_ROWS = 20_000


def _django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "leadhub.settings"
    os.environ["DJANGO_DEBUG"] = "1"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# ------------------------------------------------------------------------------------------------- data


def _messy(number: str, rng: random.Random) -> str:
    a, b = number[:5], number[5:]
    return rng.choice(
        [number, f"{a} {b}", f"+91 {a} {b}", f"0{a}-{b}", f"91-{number}", f"0091 {number}", f"(+91) {a} {b}"]
    )


def _rows(count: int, seed: int = 6) -> list[tuple[str, list]]:
    """(kind, [Phone, Name, Priority, ExpiryDate]) with kind new / existing / repeat / invalid."""
    rng = random.Random(seed)
    names = ["Asha Rao", "Ravi Kumar", "José Fernandes", "Priya S.", "Mohammed Ali", "Anil (HQ)", "Zoë D'Souza"]
    rows, seen = [], []
    for i in range(count):
        draw = rng.random()
        name, priority, expiry = f"{rng.choice(names)} {i}", rng.choice(["", "1", "50", "99"]), "2099-12-31"
        if draw < 0.08:
            kind, phone = "existing", _messy(f"90{rng.randrange(EXISTING):08d}", rng)
        elif draw < 0.09 and seen:
            kind, phone = "repeat", rng.choice(seen)
        elif draw < 0.11:
            kind, phone = "invalid", rng.choice(["12345", "98765 4321", "n/a", "+91 0000 000000"])
        else:
            kind, phone = "new", _messy(f"{rng.choice('789')}{10**8 + i:09d}", rng)
            seen.append(phone)
        rows.append((kind, [phone, name, priority, expiry]))
    return rows


def _write_files(folder: Path, rows: list) -> dict[str, Path]:
    import csv

    import openpyxl

    files = {}
    for count in (HALF, ROWS):
        path = folder / f"leads-{count}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["Mobile Number", "Customer Name", "Priority", "Expiry Date"])
            writer.writerows(cells for _kind, cells in rows[:count])
        files[f"csv-{count}"] = path
        workbook = openpyxl.Workbook(write_only=True)
        sheet = workbook.create_sheet()
        sheet.append(["Mobile Number", "Customer Name", "Priority", "Expiry Date"])
        for _kind, (phone, name, priority, expiry) in rows[:count]:
            digits = phone.isdigit()  # a plain number is stored the way Excel stores it: a float
            sheet.append([float(phone) if digits else phone, name, int(priority) if priority else None, expiry])
        path = folder / f"leads-{count}.xlsx"
        workbook.save(path)
        files[f"xlsx-{count}"] = path
    return files


def _campaign(label: str) -> int:
    """A campaign holding EXISTING leads, written with COPY."""
    from django.db import connection

    from campaigns.models import Campaign, CloudAgentAccount

    account, _ = CloudAgentAccount.objects.get_or_create(
        name="bench", defaults={"user_name": "bench", "api_key": "bench-key-0123456789"}
    )
    campaign = Campaign.objects.create(
        account=account, name=f"bench-{label}", column_map=["PhoneNumber", "Name", "Priority", "ExpiryDate"]
    )
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY campaigns_lead (campaign_id, phone_number, name, extra, status, status_reason, source, "
            "agent_id, skill, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(EXISTING):
                copy.write_row(
                    (campaign.pk, f"+9190{i:08d}", f"Old {i}", "{}", "new", "", "manual", "", "", "now", "now")
                )
        cursor.execute("ANALYZE campaigns_lead")
    return campaign.pk


# ------------------------------------------------------------------------------------------------- children


def _child(task: dict) -> dict:
    _django(os.environ["DATABASE_URL"])
    from campaigns.models import Campaign

    campaign = Campaign.objects.get(pk=task["campaign"])
    if task["kind"] == "ours":
        from campaigns.services import lead_import_create, lead_import_run

        path = Path(task["file"])
        started = time.perf_counter()
        lead_import = lead_import_create(campaign=campaign, path=path, file_name=path.name)
        report = lead_import_run(lead_import=lead_import)
        elapsed = time.perf_counter() - started
        result = {"rows": report.rows, **report.counts()}
    else:
        import tablib
        from import_export import fields, resources, widgets

        from campaigns.models import Lead
        from campaigns.normalize import normalize_phone

        class PhoneWidget(widgets.CharWidget):
            def clean(self, value, row=None, **kwargs):
                return normalize_phone(value, "IN")

        tuned = task["kind"] == "tuned"

        class LeadResource(resources.ModelResource):
            # The campaign as a plain id: a ForeignKeyWidget would add a query per row to both baselines.
            campaign_id = fields.Field(attribute="campaign_id", column_name="campaign", widget=widgets.IntegerWidget())
            phone_number = fields.Field(attribute="phone_number", column_name="phone_number", widget=PhoneWidget())

            class Meta:
                model = Lead
                fields = ("campaign_id", "phone_number", "name", "priority", "expiry_date")
                import_id_fields = ("campaign_id", "phone_number")
                if tuned:
                    use_bulk = True
                    skip_diff = True
                    force_init_instance = True
                    batch_size = 1000

        dataset = tablib.Dataset(headers=["campaign", "phone_number", "name", "priority", "expiry_date"])
        for phone, name, priority, expiry in task["rows"]:
            dataset.append([campaign.pk, phone, name, priority or None, expiry])
        started = time.perf_counter()
        outcome = LeadResource().import_data(dataset, dry_run=False, raise_errors=True)
        elapsed = time.perf_counter() - started
        result = {"rows": len(dataset), "errors": outcome.has_errors() or outcome.has_validation_errors()}
    result["seconds"] = elapsed
    result["rows_per_s"] = result["rows"] / elapsed
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _spawn(task: dict, database_url: str, media: str) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT), "MEDIA_ROOT": media}
    done = subprocess.run(
        [sys.executable, __file__, "--child"], input=json.dumps(task), env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"bench child {task['kind']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- driver


def _database() -> tuple[str, bool]:
    """The URL to use, and whether the bench created the database (and so drops it)."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url, False
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return f"{SERVER}/{BENCH_DB}", True


def _drop(url: str, created: bool) -> None:
    if created:
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    else:
        from campaigns.models import Campaign, Lead, LeadImport

        campaigns = Campaign.objects.filter(account__name="bench")
        Lead.objects.filter(campaign__in=campaigns).delete()
        LeadImport.objects.filter(campaign__in=campaigns).delete()
        campaigns.delete()


def run(report) -> None:
    url, created = _database()
    _django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
            rows = _rows(ROWS)
            files = _write_files(Path(folder), rows)
            clean = [cells for kind, cells in rows if kind == "new"][:TUNED_ROWS]
            results = {}
            for key in ("csv-100000", "csv-50000", "xlsx-100000", "xlsx-50000"):
                results[key] = _spawn(
                    {"kind": "ours", "file": str(files[key]), "campaign": _campaign(key)}, url, folder
                )
            results["stock"] = _spawn(
                {"kind": "stock", "rows": clean[:STOCK_ROWS], "campaign": _campaign("stock")}, url, folder
            )
            results["tuned"] = _spawn({"kind": "tuned", "rows": clean, "campaign": _campaign("tuned")}, url, folder)
    finally:
        _drop(url, created)

    stock, tuned = results["stock"]["rows_per_s"], results["tuned"]["rows_per_s"]
    report("import", "stock ModelResource rows/s (5k new rows)", round(stock))
    report("import", "tuned ModelResource rows/s (20k new rows)", round(tuned))
    report("import", "tuned peak MB", round(results["tuned"]["peak_mb"]))
    for fmt in ("csv", "xlsx"):
        big, half = results[f"{fmt}-100000"], results[f"{fmt}-50000"]
        report("import", f"leadhub {fmt} rows/s (100k rows)", round(big["rows_per_s"]))
        report("import", f"leadhub {fmt} / tuned", round(big["rows_per_s"] / tuned, 1))
        report("import", f"leadhub {fmt} / stock", round(big["rows_per_s"] / stock, 1))
        report("import", f"leadhub {fmt} peak MB 50k rows", round(half["peak_mb"]))
        report("import", f"leadhub {fmt} peak MB 100k rows", round(big["peak_mb"]))
        counts = ", ".join(f"{k} {big[k]}" for k in ("imported", "duplicates", "rejected", "warnings"))
        report("import", f"leadhub {fmt} outcome (100k)", counts)


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(_child(json.loads(sys.stdin.read()))))
    else:
        print(f"{'section':<8} {'figure':<42} value")
        run(lambda section, name, value: print(f"{section:<8} {name:<42} {value}", flush=True))
