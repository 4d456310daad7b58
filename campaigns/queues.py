"""The campaigns app's RQ queue and the jobs it enqueues, named by dotted path so nothing imports jobs.py back."""

import django_rq
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

IMPORTS_QUEUE = "imports"
LEAD_IMPORT_RUN_JOB = "campaigns.jobs.lead_import_run_job"
LEAD_IMPORT_PREVIEW_JOB = "campaigns.jobs.lead_import_preview_job"


def lead_import_job_id(lead_import_id: int) -> str:
    """One RQ job id per import: a resumed import's job replaces the dead one's."""
    return f"lead-import-{lead_import_id}"


def lead_import_run_enqueue(*, lead_import_id: int) -> None:
    django_rq.get_queue(IMPORTS_QUEUE).enqueue(
        LEAD_IMPORT_RUN_JOB, lead_import_id, job_id=lead_import_job_id(lead_import_id)
    )


def lead_import_preview_job_id(lead_import_id: int) -> str:
    return f"lead-import-preview-{lead_import_id}"


def lead_import_preview_enqueue(*, lead_import_id: int) -> None:
    django_rq.get_queue(IMPORTS_QUEUE).enqueue(
        LEAD_IMPORT_PREVIEW_JOB, lead_import_id, job_id=lead_import_preview_job_id(lead_import_id)
    )


def lead_import_job_alive(*, lead_import_id: int, preview: bool = False) -> bool:
    """A background import (or its preview) is alive while RQ has its job waiting or started; RQ marks a dead
    worker's job failed."""
    job_id = lead_import_preview_job_id(lead_import_id) if preview else lead_import_job_id(lead_import_id)
    try:
        job = Job.fetch(job_id, connection=django_rq.get_connection(IMPORTS_QUEUE))
    except NoSuchJobError:
        return False
    return job.get_status() in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
