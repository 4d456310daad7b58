"""Lead import benchmark (issue 12): the import as users run it, beside django-import-export, on PostgreSQL.

`manage.py import_leads FILE --campaign NAME` runs as a subprocess, exactly as from a shell: wall time from
before the process starts to after it exits (Django start-up included), and peak memory of the process *tree*
(the CLI and the child that checks rows), sampled every 20 ms with psutil, beside the CLI's own ru_maxrss.
The file has the six columns a CloudAgent campaign usually maps (PhoneNumber, Name, Priority, ExpiryDate, AgentId,
skill), clean rows of plain 10-digit mobiles, and goes into a campaign already holding 100,000 leads: at 100,000
rows for speed, and at 1,000,000 rows to show memory stays flat.

Beside it, django-import-export's best tuned ModelResource (use_bulk, skip_diff, force_init_instance,
batch_size 1000) on the first 20,000 rows of the same file, in a subprocess timed the same way; it gets only new,
valid, unique rows (it cannot skip duplicates) and normalises phones with the same normalize_phone.

The machine is shared: the load average before and after each run is reported with it, and the CPU seconds the
import spent (the CLI and its child) and PostgreSQL's backend spent, which do not depend on the neighbours.

`run(report)` calls report(section, name, value) per figure; `python bench/bench_import.py` prints a table.
Database: a database leadhub_bench on postgres://postgres@127.0.0.1:5432, created and dropped here.
"""

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("LEADHUB_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
BENCH_DB = "leadhub_bench"
EXISTING = 100_000
SIZES = (100_000, 1_000_000)
TUNED_ROWS = 20_000
COLUMNS = ["PhoneNumber", "Name", "Priority", "ExpiryDate", "AgentId", "skill"]
SAMPLE_SECONDS = 0.02


def _django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "leadhub.settings"
    os.environ["DJANGO_DEBUG"] = "1"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _write_file(path: Path, count: int) -> Path:
    """Clean rows: distinct mobiles none of which the campaign holds, names, priorities, a future expiry."""
    rng = random.Random(count)
    skills = ["sales", "support", "renewals"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(count):
            writer.writerow(
                [f"{rng.choice('789')}{i:09d}", f"Lead Name {i}", rng.randint(1, 99), "2099-12-31",
                 f"agent{i % 50}", rng.choice(skills)]
            )  # fmt: skip
    return path


def _campaign(label: str) -> str:
    """A campaign holding EXISTING leads (written with COPY); returns its name."""
    from django.db import connection

    from campaigns.models import Campaign, CloudAgentAccount

    account, _ = CloudAgentAccount.objects.get_or_create(
        name="bench", defaults={"user_name": "bench", "api_key": "bench-key-0123456789"}
    )
    campaign = Campaign.objects.create(account=account, name=f"bench-{label}", column_map=COLUMNS)
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY campaigns_lead (campaign_id, phone_number, name, extra, status, status_reason, source, "
            "agent_id, skill, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(EXISTING):
                copy.write_row(
                    (campaign.pk, f"+9160{i:08d}", f"Old {i}", "{}", "new", "", "manual", "", "", "now", "now")
                )
        cursor.execute("ANALYZE campaigns_lead")
    return campaign.name


def _backend_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the bench database, by pid."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("postgres:") and f" {BENCH_DB} " in cmdline:
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            found[process.pid] = times.user + times.system
    return found


def _timed(command: list[str], env: dict) -> dict:
    """Run a command as a user would; wall time, its tree's peak RSS (sampled), its CPU and the database's (the
    backends' CPU is sampled too: a backend's figures go when the CLI disconnects)."""
    load_before = os.getloadavg()[0]
    before = psutil.Process().cpu_times()
    backends_before = _backend_cpu()
    backends = dict(backends_before)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, samples = 0, 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.NoSuchProcess:
            pass
        samples += 1
        if samples % 10 == 0:
            backends.update(_backend_cpu())
        time.sleep(SAMPLE_SECONDS)
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{stderr[-3000:]}")
    after = psutil.Process().cpu_times()  # children_* now include the CLI and its reaped child
    return {
        "seconds": elapsed,
        "peak_mb": peak / 2**20,
        "cpu": (after.children_user + after.children_system) - (before.children_user + before.children_system),
        "db_cpu": sum(backends.values()) - sum(backends_before.values()),
        "load": (load_before, os.getloadavg()[0]),
        "stdout": stdout,
    }


def _import_cli(path: Path, campaign: str, env: dict) -> dict:
    result = _timed([sys.executable, "manage.py", "import_leads", str(path), "--campaign", campaign, "--json"], env)
    result.update(json.loads(result.pop("stdout").strip().splitlines()[-1]))
    return result


def _tuned_child(path: str, campaign_name: str, rows: int) -> None:
    """django-import-export's best tuning on the first `rows` rows of the file (run as its own process)."""
    _django(os.environ["DATABASE_URL"])
    import tablib
    from import_export import fields, resources, widgets

    from campaigns.models import Campaign, Lead
    from campaigns.normalize import normalize_phone

    campaign = Campaign.objects.get(name=campaign_name)

    class PhoneWidget(widgets.CharWidget):
        def clean(self, value, row=None, **kwargs):
            return normalize_phone(value, "IN")

    class LeadResource(resources.ModelResource):
        # The campaign as a plain id: a ForeignKeyWidget would add a query per row.
        campaign_id = fields.Field(attribute="campaign_id", column_name="campaign", widget=widgets.IntegerWidget())
        phone_number = fields.Field(attribute="phone_number", column_name="PhoneNumber", widget=PhoneWidget())
        name = fields.Field(attribute="name", column_name="Name")
        priority = fields.Field(attribute="priority", column_name="Priority", widget=widgets.IntegerWidget())
        expiry_date = fields.Field(attribute="expiry_date", column_name="ExpiryDate", widget=widgets.DateWidget())
        agent_id = fields.Field(attribute="agent_id", column_name="AgentId")
        skill = fields.Field(attribute="skill", column_name="skill")

        class Meta:
            model = Lead
            fields = ("campaign_id", "phone_number", "name", "priority", "expiry_date", "agent_id", "skill")
            import_id_fields = ("campaign_id", "phone_number")
            use_bulk = True
            skip_diff = True
            force_init_instance = True
            batch_size = 1000

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = ["campaign", *next(reader)]
        dataset = tablib.Dataset(headers=header)
        for i, row in enumerate(reader):
            if i >= rows:
                break
            dataset.append([campaign.pk, *row])
    outcome = LeadResource().import_data(dataset, dry_run=False, raise_errors=True)
    print(json.dumps({"rows": len(dataset), "errors": outcome.has_errors() or outcome.has_validation_errors()}))


def _database() -> str:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return f"{SERVER}/{BENCH_DB}"


def _drop() -> None:
    from django.db import connections

    connections.close_all()
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def run(report, sizes=SIZES) -> None:
    url = _database()
    _django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "1", "PYTHONPATH": str(ROOT)}
    report("import", "CPUs / load average at start", f"{os.cpu_count()} / {os.getloadavg()[0]:.1f}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
            env["MEDIA_ROOT"] = folder
            results = {}
            for size in sizes:
                path = _write_file(Path(folder) / f"six-{size}.csv", size)
                results[size] = _import_cli(path, _campaign(f"cli-{size}"), env)
                if size == sizes[0]:
                    tuned = _timed(
                        [sys.executable, __file__, "--tuned", str(path), _campaign("tuned"), str(TUNED_ROWS)], env
                    )
                    tuned["rows"] = json.loads(tuned.pop("stdout").strip().splitlines()[-1])["rows"]
                path.unlink()
    finally:
        _drop()

    tuned_rate = tuned["rows"] / tuned["seconds"]
    report("import", f"tuned django-import-export rows/s ({TUNED_ROWS // 1000}k rows, wall)", round(tuned_rate))
    report("import", "tuned django-import-export peak MB", round(tuned["peak_mb"]))
    for size, result in results.items():
        label = f"{size // 1000}k" if size < 1_000_000 else f"{size // 1_000_000}M"
        rate = result["rows"] / result["seconds"]
        report("import", f"import_leads {label} rows: rows/s (wall, start-up included)", round(rate))
        report("import", f"import_leads {label} rows: wall s", round(result["seconds"], 1))
        report("import", f"import_leads {label} rows: peak MB (CLI + child)", round(result["peak_mb"]))
        cpu = f"{result['cpu']:.1f} / {result['db_cpu']:.1f}"
        report("import", f"import_leads {label} rows: CPU s import / database", cpu)
        load = "{:.1f} / {:.1f}".format(*result["load"])
        report("import", f"import_leads {label} rows: load average before/after", load)
        outcome = f"imported {result['imported']}, duplicates {result['duplicates']}, rejected {result['rejected']}"
        report("import", f"import_leads {label} rows: outcome", outcome)
        if size == sizes[0]:
            report("import", f"import_leads {label} / tuned django-import-export", round(rate / tuned_rate, 1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tuned"]:
        _tuned_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        print(f"{'section':<8} {'figure':<60} value")
        chosen = tuple(int(n) for n in sys.argv[1:]) or SIZES
        run(lambda section, name, value: print(f"{section:<8} {name:<60} {value}", flush=True), sizes=chosen)
