"""An import stopped by a crash half-way resumes from its stored file: nothing written twice, no row lost."""

import weakref
from datetime import timedelta
from pathlib import Path

import django_rq
import pytest
from django.db.models.signals import post_init
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from campaigns import services as campaigns_services
from campaigns.importing import writers
from campaigns.models import Lead, LeadImport
from campaigns.services import (
    LeadImportError,
    lead_import_create,
    lead_import_resume,
    lead_import_run,
    lead_import_undo,
)
from uploads.dispatcher import unfinished_work_resume

pytestmark = pytest.mark.django_db


class WorkerDied(Exception):
    """Stands in for the process dying at an exact point: in the second chunk, after the first was committed."""


@pytest.fixture
def stopped_import(campaign, lead_file, import_media, monkeypatch, redis_conn):
    monkeypatch.setattr(writers, "CHUNK_ROWS", 10)
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(35)] + [["12345", "Bad", "", ""]]
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv")

    def die_in_the_second_chunk(lines: int, expected: int) -> None:
        if lines > 10:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        lead_import_run(lead_import=lead_import, progress=die_in_the_second_chunk)
    lead_import.refresh_from_db()
    assert lead_import.state == LeadImport.State.FAILED
    assert Lead.objects.count() == 10, "the first chunk was committed before the crash"
    return lead_import


def test_a_resumed_import_writes_the_rest_and_counts_what_it_wrote_before(stopped_import):
    assert lead_import_resume(lead_import=stopped_import) is False  # small: it ran in the request

    stopped_import.refresh_from_db()
    assert stopped_import.state == LeadImport.State.COMPLETED
    assert (stopped_import.imported, stopped_import.duplicates, stopped_import.rejected) == (35, 0, 1)
    assert Lead.objects.filter(lead_import=stopped_import).count() == 35
    assert sorted(Lead.objects.values_list("source_line", flat=True)) == list(range(2, 37))


def test_an_import_left_running_by_a_dead_worker_can_be_resumed(stopped_import):
    LeadImport.objects.filter(pk=stopped_import.pk).update(
        state=LeadImport.State.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=2)
    )
    stopped_import.refresh_from_db()
    lead_import_resume(lead_import=stopped_import)
    stopped_import.refresh_from_db()
    assert stopped_import.state == LeadImport.State.COMPLETED and stopped_import.imported == 35


def test_a_completed_import_is_not_resumed(stopped_import):
    lead_import_resume(lead_import=stopped_import)
    with pytest.raises(LeadImportError, match="Only a failed or stopped import"):
        lead_import_resume(lead_import=stopped_import)
    assert Lead.objects.count() == 35


def test_resume_from_the_admin(admin_client, stopped_import):
    url = reverse("admin:campaigns_leadimport_resume", args=[stopped_import.pk])
    page = admin_client.get(reverse("admin:campaigns_leadimport_change", args=[stopped_import.pk]))
    assert url in page.content.decode(), "a failed import offers Resume"
    assert admin_client.get(url).status_code == 403, "resuming writes: POST only"

    done = admin_client.post(url, follow=True)

    assert "Import resumed" in " ".join(str(m) for m in done.context["messages"])
    stopped_import.refresh_from_db()
    assert stopped_import.state == LeadImport.State.COMPLETED


def test_the_recovery_sweep_restarts_a_background_import_whose_job_is_gone(
    stopped_import, settings, redis_conn, django_capture_on_commit_callbacks
):
    """The worker running it died, or Redis came back empty: the import row says it is running, no job does."""
    settings.LEADHUB_IMPORT_BACKGROUND_ROWS = 5
    LeadImport.objects.filter(pk=stopped_import.pk).update(
        state=LeadImport.State.RUNNING,
        created_at=timezone.now() - timedelta(minutes=5),
        heartbeat_at=timezone.now() - timedelta(minutes=4),
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert unfinished_work_resume()["imports_resumed"] == 1

    imports_queue = django_rq.get_queue("imports")
    assert [job.args for job in imports_queue.jobs] == [(stopped_import.pk,)]
    assert unfinished_work_resume().get("imports_resumed") is None, "its job is alive now: not restarted twice"
    django_rq.get_worker("imports", worker_class=SimpleWorker).work(burst=True)  # in this test's transaction
    stopped_import.refresh_from_db()
    assert stopped_import.state == LeadImport.State.COMPLETED and stopped_import.imported == 35


def test_the_recovery_sweep_runs_again_a_preview_whose_job_is_gone(
    campaign, lead_file, import_media, settings, redis_conn, django_capture_on_commit_callbacks
):
    settings.LEADHUB_IMPORT_BACKGROUND_ROWS = 5
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(20)]
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv", preview=True)
    # Its job started, then died with its worker (or Redis): the record says previewing, no job does.
    LeadImport.objects.filter(pk=lead_import.pk).update(
        started_at=timezone.now(), created_at=timezone.now() - timedelta(minutes=5)
    )

    with django_capture_on_commit_callbacks(execute=True):  # django_rq enqueues once the transaction commits
        assert unfinished_work_resume()["imports_resumed"] == 1

    django_rq.get_worker("imports", worker_class=SimpleWorker).work(burst=True)
    lead_import.refresh_from_db()
    assert lead_import.state == LeadImport.State.PREVIEWED and lead_import.rows == 20
    assert not Lead.objects.exists(), "a preview writes nothing"


def test_the_recovery_sweep_leaves_alone_an_import_running_in_the_command_line(
    campaign, lead_file, import_media, settings, monkeypatch, redis_conn, django_capture_on_commit_callbacks
):
    """`manage.py import_leads` runs a file of any size in its own process, with no RQ job: the dispatcher's
    watchdog, sweeping meanwhile, must not take it for a dead background import and run it a second time."""
    settings.LEADHUB_IMPORT_BACKGROUND_ROWS = 5
    monkeypatch.setattr(writers, "CHUNK_ROWS", 10)
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(30)]
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv")
    LeadImport.objects.filter(pk=lead_import.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    swept = []

    def watchdog_meanwhile(lines: int, expected: int) -> None:
        if lines == 10:
            with django_capture_on_commit_callbacks(execute=True):
                swept.append(unfinished_work_resume().get("imports_resumed", 0))

    lead_import_run(lead_import=lead_import, progress=watchdog_meanwhile)

    assert swept == [0]
    assert django_rq.get_queue("imports").jobs == []
    lead_import.refresh_from_db()
    assert lead_import.state == LeadImport.State.COMPLETED and lead_import.imported == 30


def test_resume_refuses_an_import_that_is_still_writing_without_a_job(
    campaign, lead_file, import_media, monkeypatch, redis_conn
):
    """An import run in a request or by `manage.py import_leads` has no RQ job; a Resume clicked meanwhile (or a
    second click) took it for a dead one and ran the file a second time beside it."""
    monkeypatch.setattr(writers, "CHUNK_ROWS", 10)
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(30)]
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv")
    refusals = []

    def resume_clicked_meanwhile(lines: int, expected: int) -> None:
        if lines == 10:
            with pytest.raises(LeadImportError, match="still running") as refused:
                lead_import_resume(lead_import=LeadImport.objects.get(pk=lead_import.pk))
            refusals.append(str(refused.value))

    lead_import_run(lead_import=lead_import, progress=resume_clicked_meanwhile)

    assert len(refusals) == 1
    lead_import.refresh_from_db()
    assert lead_import.state == LeadImport.State.COMPLETED and lead_import.imported == 30


def test_undo_holds_a_chunk_of_leads_in_memory_not_the_whole_import(campaign, lead_file, import_media, monkeypatch):
    """Undo deleted with one queryset delete(): a lead may have calls (SET_NULL), so Django's collector loaded
    every lead of the import as a model instance first, a million of them in one web request. Leads alive at
    once are counted as Django builds them (post_init)."""
    monkeypatch.setattr(campaigns_services, "UNDO_CHUNK", 10, raising=False)
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(35)]
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv")
    lead_import_run(lead_import=lead_import)
    alive, peak = weakref.WeakSet(), [0]

    def built(sender, instance, **kwargs):
        alive.add(instance)
        peak[0] = max(peak[0], len(alive))

    post_init.connect(built, sender=Lead)
    try:
        assert lead_import_undo(lead_import=lead_import) == 35
    finally:
        post_init.disconnect(built, sender=Lead)

    assert not Lead.objects.exists()
    assert 0 < peak[0] <= 10


def test_an_imports_files_are_deleted_once_it_has_been_over_longer_than_the_keep_period(
    campaign, lead_file, import_media, settings
):
    rows = [["9876500001", "Asha", "", ""], ["12345", "Bad", "", ""]]
    old, recent = (
        lead_import_create(campaign=campaign, path=str(lead_file(rows, name=f"{n}.csv")), file_name=f"{n}.csv")
        for n in ("old", "recent")
    )
    for lead_import in (old, recent):
        lead_import_run(lead_import=lead_import)
        lead_import.refresh_from_db()
        assert lead_import.file.name and lead_import.rejected_file.name
    LeadImport.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=31))
    stored = [old.file.path, old.rejected_file.path]
    settings.LEADHUB_WATCHDOG_SECONDS = 60

    counts = unfinished_work_resume()

    old.refresh_from_db()
    recent.refresh_from_db()
    assert counts.get("import_files_deleted") == 1
    assert (old.file.name, old.rejected_file.name) == ("", "")
    assert not any(Path(path).exists() for path in stored), "the files are gone from storage"
    assert "deleted after 30 day(s)" in old.message and old.rejected == 1, "the record and its counts stay"
    assert recent.file.name and Path(recent.rejected_file.path).exists()
