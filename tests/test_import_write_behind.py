"""A big import on PostgreSQL writes its chunks on writer threads with connections of their own (write-behind):
the same outcome as one connection writing, chunks committed in file order, and a failed chunk stops the import
with nothing after it committed, so resuming writes every row once."""

import threading

import pytest
from django.db import connection

from campaigns.importing import writers
from campaigns.models import Lead, LeadImport
from campaigns.services import lead_import_create, lead_import_resume, lead_import_run

# Writer threads see only committed rows: the campaign and the import must be committed, not in a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("write-behind is PostgreSQL's (SQLite imports on one connection)")


class ChunkCrashed(Exception):
    """Stands in for a database failure while one chunk is inserted."""


def import_rows(campaign, lead_file, rows, **kwargs):
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv")
    return lead_import, lead_import_run(lead_import=lead_import, **kwargs)


def outcome(report):
    return report.counts(), report.duplicate_rows, report.rejected_rows, report.warning_list, report.new_rows


def test_writing_behind_gives_the_report_and_leads_one_connection_gives(
    account, campaign, make_leads, lead_file, import_media, monkeypatch
):
    """Repeats within and across chunks, numbers the campaign has, rejections and warnings: the same report and
    the same leads, written by threads or not."""
    make_leads(3, start=10)  # +919800000010..12: in the campaign already
    rows = [["98765 43210", "Zoë", "", ""], ["bad", "B", "", ""], ["+91 98765 43210", "C", "", ""]]
    rows += [[f"98765{i:05d}", f"N{i}", "5", ""] for i in range(20)] + [["9876500003", "again", "", ""]]
    rows += [["9800000011", "old", "", ""], ["98000 00099", "last", "", ""]]
    twin = campaign.__class__.objects.create(account=account, name="Twin", column_map=campaign.column_map)
    make_leads(3, campaign=twin, start=10)
    monkeypatch.setattr(writers, "CHUNK_ROWS", 4)

    _one, inline = import_rows(twin, lead_file, rows)
    monkeypatch.setattr(writers, "WRITE_BEHIND_ROWS", 1)
    monkeypatch.setattr(writers, "PARALLEL_ROWS", 1)
    _behind, behind = import_rows(campaign, lead_file, rows)

    assert outcome(behind) == outcome(inline)
    counts = behind.counts()
    assert (counts["rows"], counts["imported"], counts["duplicates"], counts["rejected"]) == (26, 22, 3, 1)
    assert [(line, reason) for line, _phone, reason in behind.duplicate_rows] == [
        (4, "repeats line 2"),
        (25, "repeats line 8"),
        (26, "already in the campaign"),
    ]

    def leads(of):
        return sorted(Lead.objects.filter(campaign=of).values_list("phone_number", "name", "source_line"))

    assert leads(campaign) == leads(twin)


def test_chunks_are_recorded_as_written_in_file_order(campaign, lead_file, import_media, monkeypatch):
    """Two writers insert side by side, yet each chunk's progress commits after every chunk before it: the
    progress seen only grows, and when it says N lines, the leads of those lines are committed."""
    monkeypatch.setattr(writers, "CHUNK_ROWS", 5)
    monkeypatch.setattr(writers, "WRITE_BEHIND_ROWS", 1)
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(60)]
    seen, writers_seen = [], set()

    def progress(lines: int, expected: int) -> None:
        seen.append(lines)
        writers_seen.add(threading.current_thread().name)

    lead_import, report = import_rows(campaign, lead_file, rows, progress=progress)

    assert seen == list(range(5, 61, 5))
    assert writers_seen <= {"lead-import-writer-0", "lead-import-writer-1"} and writers_seen
    assert report.imported == 60 and Lead.objects.filter(lead_import=lead_import).count() == 60
    lead_import.refresh_from_db()
    assert (lead_import.state, lead_import.rows_processed) == (LeadImport.State.COMPLETED, 60)


def test_a_failed_chunk_stops_the_import_and_resuming_writes_every_row_once(
    campaign, lead_file, import_media, monkeypatch
):
    monkeypatch.setattr(writers, "CHUNK_ROWS", 10)
    monkeypatch.setattr(writers, "WRITE_BEHIND_ROWS", 1)
    rows = [[f"98765{n:05d}", f"Lead {n}", "", ""] for n in range(60)]
    lead_import = lead_import_create(campaign=campaign, path=str(lead_file(rows)), file_name="leads.csv")
    insert = writers._PostgresLeads.insert

    def crash_on_the_third_chunk(self, chunk, *, staged):
        if chunk and chunk[0][0] == 22:  # line 22: the first of the third chunk
            raise ChunkCrashed
        return insert(self, chunk, staged=staged)

    monkeypatch.setattr(writers._PostgresLeads, "insert", crash_on_the_third_chunk)
    with pytest.raises(ChunkCrashed):
        lead_import_run(lead_import=lead_import)
    lead_import.refresh_from_db()
    assert lead_import.state == LeadImport.State.FAILED
    written = sorted(Lead.objects.filter(lead_import=lead_import).values_list("source_line", flat=True))
    assert written == list(range(2, 22)), "the two chunks before the failed one, and none after it"
    assert lead_import.rows_processed == 20

    monkeypatch.setattr(writers._PostgresLeads, "insert", insert)
    lead_import_resume(lead_import=lead_import)
    lead_import.refresh_from_db()
    assert (lead_import.state, lead_import.imported, lead_import.duplicates) == (LeadImport.State.COMPLETED, 60, 0)
    assert Lead.objects.filter(lead_import=lead_import).count() == 60
