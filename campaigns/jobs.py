"""Background jobs of the campaigns app: large lead imports, on the "imports" queue."""

from campaigns.models import LeadImport
from campaigns.services import lead_import_preview_run, lead_import_run


def lead_import_run_job(lead_import_id: int) -> dict:
    """Takes the id, not the record: the record is loaded fresh when a worker picks the job up."""
    lead_import = LeadImport.objects.select_related("campaign").get(pk=lead_import_id)
    return lead_import_run(lead_import=lead_import).counts()


def lead_import_preview_job(lead_import_id: int) -> dict:
    lead_import = LeadImport.objects.select_related("campaign").get(pk=lead_import_id)
    return lead_import_preview_run(lead_import=lead_import).counts()
