"""The import's database writers: one pass over a sheet whose rows the policy checks (in a second process for a
big file), writing new leads CHUNK_ROWS at a time, each chunk in its own transaction.

Memory stays flat: rows are read and checked a chunk at a time; on PostgreSQL the numbers seen so far (the in-file
duplicate check) are a TEMP table, not a Python set; campaign duplicates are found by the INSERT itself; what a
report keeps is the first PREVIEW_ROWS rows of each kind. Services call this module; it never touches the
LeadImport record (campaigns.services owns that).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.utils import timezone

from campaigns.importing.parallel import map_in_child
from campaigns.importing.policy import PREVIEW_ROWS, ROW_FIELDS, Checked, ImportReport, Row, RowPolicy
from campaigns.importing.readers import Sheet, cell_text
from campaigns.models import Campaign, Lead

if TYPE_CHECKING:
    from campaigns.importing.columns import MappingProposal

CHUNK_ROWS = 5000
# From this many lines on, rows are checked in a child process while this one writes (campaigns.importing.parallel).
PARALLEL_ROWS = 20_000
# From this many lines on (PostgreSQL, a real run outside a caller's transaction), chunks are written by a thread with
# a database connection of its own while this thread finds the next chunk's repeats on its connection.
WRITE_BEHIND_ROWS = 20_000
WRITERS = 2
TEMP_BUFFERS = "160MB"


class ChunkWriteAbandoned(RuntimeError):
    """A writer gave its chunk up because another chunk of the import failed (that failure is the one raised)."""


class _LeadFileImport:
    """One pass over a sheet for one campaign. A real run commits each chunk in its own transaction, so the
    progress it reports is visible to the admin and a failure keeps what was written (the import can be undone)."""

    def __init__(
        self,
        *,
        campaign: Campaign,
        sheet: Sheet,
        mapping: MappingProposal,
        lead_import_id: int | None,
        dry_run: bool,
        on_reject: Callable[[int, list, str], None] | None,
        progress: Callable[[int, int], None] | None,
    ):
        self.campaign = campaign
        self.sheet = sheet
        self.dry_run = dry_run
        self.on_reject = on_reject
        self.progress = progress
        self.columns = list(campaign.column_map)
        self.report = ImportReport(
            columns=self.columns,
            header=sheet.header,
            profile=mapping.profile.label if mapping.profile else "",
            mapped=[(c.header, c.field, c.reason) for c in mapping.columns],
        )
        for message in mapping.warnings:
            self.report.warn(None, message)
        self.policy = RowPolicy(
            campaign=campaign,
            index=mapping.index,
            kept=mapping.extras,
            width=len(mapping.columns),
            header=sheet.header,
        )
        self.lead_import_id = lead_import_id
        self.leads = self._leads()

    def _leads(self) -> _SqlLeads:
        leads = _PostgresLeads if connection.vendor == "postgresql" else _SqlLeads
        return leads(self.campaign.pk, self.lead_import_id, with_extra=self.campaign.update_existing_on_import)

    def run(self) -> ImportReport:
        """Check the rows a batch at a time (in a child process for a big file, so checking the next batch overlaps
        writing this one), then sort and write each batch."""
        if self.sheet.rows_estimate >= PARALLEL_ROWS:
            batches = map_in_child(self.sheet.rows, self.policy.checked, batch=CHUNK_ROWS)
        else:
            batches = (self.policy.checked(batch) for batch in _batched(self.sheet.rows, CHUNK_ROWS))
        # Another connection sees only committed rows: not this import's record inside a caller's transaction.
        write_behind = (
            not self.dry_run
            and connection.vendor == "postgresql"
            and self.sheet.rows_estimate >= WRITE_BEHIND_ROWS
            and not connection.in_atomic_block
        )
        self.leads.start()
        try:
            if write_behind:
                self._write_behind(batches)
            else:
                lines_read = 0
                for checked in batches:
                    lines_read += checked.lines
                    with transaction.atomic():
                        self.leads.relax_commit()
                        repeats = self.leads.repeats(checked.accepted) if checked.accepted else {}
                        self._write(checked, lines_read, repeats, self.leads)
        finally:
            self.leads.finish()
        return self.report

    def _write_behind(self, batches: Iterator[Checked]) -> None:
        """This thread finds each chunk's repeats of earlier lines (the seen table is on its connection) and hands
        the chunk on to WRITERS threads, each with a connection of its own (Django's are per thread): the database
        inserts two chunks at once while this thread reads the next, on both cores (docs/performance.md, Import
        with write-behind). The inserts overlap; the rest of a chunk waits for its turn, so chunks are accounted for
        and commit with their progress in file order: a chunk is recorded as written only once it and every chunk
        before it are committed. No two chunks hold the same number (repeats stay out), so they never conflict."""
        handed: queue.Queue = queue.Queue(maxsize=1)
        failed: list[tuple[int, BaseException]] = []  # (the chunk, -1 for none), what stopped a writer
        turn = threading.Condition()
        committed = [0]  # chunks committed, in file order

        def wait_turn(index: int) -> None:
            """Until the chunks before this one are committed; a failed one before it abandons this one (what is
            committed stays the file's first chunks), a failed one after it does not."""
            with turn:
                while committed[0] < index and not any(at < index for at, _exc in failed):
                    turn.wait(0.5)
                if any(at < index for at, _exc in failed):
                    raise ChunkWriteAbandoned("an earlier chunk of this import failed")

        def write() -> None:
            leads = self._leads()
            index = -1
            try:
                leads.start()
                leads.relax_commit(session=True)  # this connection is the writer's alone, closed below
                while (item := handed.get()) is not None:
                    index, checked, lines_read, repeats = item
                    with transaction.atomic():
                        leads.check_references_now()
                        self._write(checked, lines_read, repeats, leads, wait_turn=partial(wait_turn, index))
                    with turn:
                        committed[0] = index + 1
                        turn.notify_all()
                leads.finish()
            except BaseException as exc:  # noqa: B036 -- re-raised in the caller's thread
                with turn:
                    failed.append((index, exc))
                    turn.notify_all()
                while handed.get() is not None:  # the caller stops at its next chunk; never leave it blocked
                    pass
            finally:
                connection.close()

        writers = [threading.Thread(target=write, name=f"lead-import-writer-{n}", daemon=True) for n in range(WRITERS)]
        for writer in writers:
            writer.start()
        lines_read = 0
        try:
            for index, checked in enumerate(batches):
                if failed:
                    break
                lines_read += checked.lines
                repeats = self.leads.repeats(checked.accepted, staged=False) if checked.accepted else {}
                handed.put((index, checked, lines_read, repeats))
        finally:
            for _writer in writers:
                handed.put(None)
            for writer in writers:
                writer.join()
        if failed:
            raise min(failed, key=lambda failure: isinstance(failure[1], ChunkWriteAbandoned))[1]

    def _write(
        self,
        checked: Checked,
        lines_read: int,
        repeats: dict[int, int],
        leads: _SqlLeads,
        wait_turn: Callable[[], None] = lambda: None,
    ) -> None:
        """One chunk, in the caller's transaction: new rows are inserted first (ON CONFLICT DO NOTHING), then, at
        its turn (`wait_turn`), the chunk is accounted for in the report: rejects, repeats, the few rows not
        inserted looked up in the campaign (duplicates, updates, rows written before a crash), progress."""
        unique = [row for row in checked.accepted if row[0] not in repeats]
        inserted = leads.insert(unique, staged=leads is self.leads) if unique and not self.dry_run else set()
        wait_turn()
        report = self.report
        report.rows += checked.rows
        report.warnings += checked.warning_count
        report.warning_list += checked.warnings[: PREVIEW_ROWS - len(report.warning_list)]
        for line, cells, reason in checked.rejected:
            self._reject(line, cells, reason)
        self._flush(checked.accepted, unique, inserted, lines_read, repeats, leads)

    def _reject(self, line: int, cells: list, reason: str) -> None:
        report = self.report
        report.rejected += 1
        if len(report.rejected_rows) < PREVIEW_ROWS:
            report.rejected_rows.append((line, reason, [cell_text(c) for c in cells]))
        if self.on_reject:
            self.on_reject(line, cells, reason)

    def _listed(self, rows: list, listed: list) -> None:
        for row in rows[: PREVIEW_ROWS - len(listed)]:
            listed.append((row[0], list(row[2])))

    def _flush(
        self,
        chunk: list[Row],
        unique: list[Row],
        inserted: set[str],
        lines_read: int,
        repeats: dict[int, int],
        leads: _SqlLeads,
    ) -> None:
        """Sort a chunk into repeats of earlier lines (`repeats`: line -> first line), new (`inserted`), updated and
        duplicate rows against the campaign: only the few `unique` rows not inserted are looked up, rather than
        every number of the chunk."""
        update_existing = self.campaign.update_existing_on_import
        report = self.report
        for row in chunk:
            line = row[0]
            if line in repeats:
                report.duplicate(line, _phone(row), f"repeats line {repeats[line]}")
        new = [row for row in unique if _phone(row) in inserted]
        others = [row for row in unique if _phone(row) not in inserted]
        existing = leads.existing([_phone(row) for row in others]) if others else {}
        updates, written_before = [], []
        for row in others:
            line, phone = row[0], _phone(row)
            found = existing.get(phone)
            if found is None:
                # Dry: it would be new. Written: another import took the number and it went since.
                if self.dry_run:
                    new.append(row)
                else:
                    report.duplicate(line, phone, "already in the campaign")
            elif self.lead_import_id is not None and found[1] == self.lead_import_id:
                written_before.append(row)  # by this import, before a crash stopped it: resuming
            elif update_existing and found[0] == Lead.Status.NEW:
                updates.append((row, found[2]))
            elif update_existing:
                report.duplicate(line, phone, f"already in the campaign as a {found[0]} lead; not updated")
            else:
                report.duplicate(line, phone, "already in the campaign")
        if self.dry_run:
            updated = len(updates)
        else:
            updated = leads.update(self.policy.update_fields, updates) if updates else 0
            report.duplicates += len(updates) - updated
        report.imported += len(new) + len(written_before)
        report.updated += updated
        self._listed(new, report.new_rows)
        self._listed([row for row, _extra in updates], report.updated_rows)
        if self.progress:
            self.progress(lines_read, max(lines_read, self.sheet.rows_estimate))


def _phone(row: Row) -> str:
    return row[1][0]


def _batched(items: Iterator, size: int) -> Iterator[list]:
    while batch := list(islice(items, size)):
        yield batch


def _columns(*names: str) -> list[str]:
    return [connection.ops.quote_name(Lead._meta.get_field(name).column) for name in names]


class _SqlLeads:
    """The campaign's leads as an import sees them, a chunk at a time: which rows repeat an earlier line, which
    numbers the campaign has, and the writes, with multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLite
    3.35+). SQLite is for development and tests: the numbers seen so far are held in memory here."""

    BATCH = 500
    # Columns after the row's own: status, status_reason, source, lead_import, created_at, updated_at, campaign.
    FIXED = ("status", "status_reason", "source", "lead_import", "created_at", "updated_at", "campaign")

    def __init__(self, campaign_id: int, lead_import_id: int | None, *, with_extra: bool):
        self.campaign_id = campaign_id
        self.with_extra = with_extra
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        self.now = now
        self.fixed = (Lead.Status.NEW.value, "", Lead.Source.IMPORT.value, lead_import_id, now, now, campaign_id)
        self.table = connection.ops.quote_name(Lead._meta.db_table)
        self.conflict = ", ".join(_columns("campaign", "phone_number"))
        self.phone_column = _columns("phone_number")[0]
        self.seen: dict[str, int] = {}

    def start(self) -> None:
        self.seen = {}

    def relax_commit(self, *, session: bool = False) -> None:
        """Nothing to relax on SQLite."""

    def check_references_now(self) -> None:
        """Nothing to move on SQLite (one writer at a time)."""

    def finish(self) -> None:
        self.seen = {}

    def repeats(self, chunk: list[Row], *, staged: bool = True) -> dict[int, int]:
        """line -> the earlier line of the file with the same number, for the chunk's rows that repeat one.
        `staged`: the chunk's rows are kept for this connection's `insert` (PostgreSQL's stage table)."""
        found = {}
        for line, values, _sent in chunk:
            first = self.seen.setdefault(values[0], line)
            if first != line:
                found[line] = first
        return found

    def existing(self, phones: list[str]) -> dict[str, tuple[str, int | None, dict | None]]:
        """phone -> (status, the import that wrote it, extra if the campaign updates existing leads) for the numbers
        the campaign has."""
        fields = ("phone_number", "status", "lead_import", "extra")[: 4 if self.with_extra else 3]
        found = Lead.objects.filter(campaign_id=self.campaign_id, phone_number__in=phones).values_list(*fields)
        return {phone: (status, source, extra[0] if extra else None) for phone, status, source, *extra in found}

    def insert(self, rows: list[Row], *, staged: bool) -> set[str]:
        """The numbers inserted; the others the campaign had already. `staged`: `repeats` kept the rows' chunk."""
        columns = ", ".join(_columns(*ROW_FIELDS, *self.FIXED))
        width = len(ROW_FIELDS) + len(self.FIXED)
        inserted = set()
        with connection.cursor() as cursor:
            for start in range(0, len(rows), self.BATCH):
                batch = [row[1] for row in rows[start : start + self.BATCH]]
                values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(batch))
                params = [p for row_values in batch for p in (*row_values, *self.fixed)]
                cursor.execute(
                    f"INSERT INTO {self.table} ({columns}) VALUES {values} "
                    f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.phone_column}",
                    params,
                )
                inserted.update(phone for (phone,) in cursor.fetchall())
        return inserted

    def update(self, fields: list[str], updates: list[tuple[Row, dict]]) -> int:
        """The file's columns replace the lead's values; its extra columns are merged into the lead's extra. The
        status is checked in the same UPDATE, so a lead the push claimed meanwhile stays as it was."""
        position = {name: i for i, name in enumerate(ROW_FIELDS)}
        sets = ", ".join(f"{column} = %s" for column in _columns(*fields, "updated_at"))
        where = " AND ".join(f"{column} = %s" for column in _columns("campaign", "phone_number", "status"))
        params = []
        for (_line, row_values, _sent), old_extra in updates:
            values = []
            for name in fields:
                if name == "extra":
                    new_extra = json.loads(row_values[position["extra"]])
                    merged = {k: v for k, v in {**(old_extra or {}), **new_extra}.items() if v}
                    values.append(connection.ops.adapt_json_value(merged, None))
                else:
                    values.append(row_values[position[name]])
            params.append((*values, self.now, self.campaign_id, row_values[0], Lead.Status.NEW.value))
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {self.table} SET {sets} WHERE {where}", params)
            return cursor.rowcount


class _PostgresLeads(_SqlLeads):
    """Each chunk is COPYed into a TEMP table; the numbers seen so far are a TEMP table too, so an import of
    millions of rows holds none of them in Python. New rows go in with one INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING: ~8x faster than row inserts into the indexed leads table (docs/performance.md, Import).
    Lookups bind a chunk's numbers as one array: an IN list of 5,000 parameters costs more to build and bind than
    to run."""

    STAGE = "leadhub_import_rows"
    SEEN = "leadhub_import_seen"
    staged = 0  # rows in the stage table

    def start(self) -> None:
        """The TEMP tables live as long as the connection (a worker's may serve many imports): made afresh here."""
        columns = ", ".join(_columns(*ROW_FIELDS))
        with connection.cursor() as cursor:
            # The seen table of a million-row file is ~100 MB; in the default 8 MB of TEMP buffers its key is read
            # back from disk page by page. Only a session's first use of TEMP tables can raise it (a worker's
            # later imports keep what its first one set).
            cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
            cursor.execute(f"DROP TABLE IF EXISTS {self.STAGE}, {self.SEEN}")
            cursor.execute(f"CREATE TEMP TABLE {self.STAGE} AS SELECT {columns} FROM {self.table} WITH NO DATA")
            cursor.execute(f"CREATE TEMP TABLE {self.SEEN} (phone text PRIMARY KEY, line integer NOT NULL)")

    def finish(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.STAGE}, {self.SEEN}")

    def relax_commit(self, *, session: bool = False) -> None:
        """A chunk's commit need not wait for its WAL to reach the disk (PostgreSQL's asynchronous commit): a
        crash can lose at most the last few chunks, never consistency, and a resumed import writes them again
        (rows carry their import). It saves a disk flush per chunk. For the transaction, or with `session` for
        every later one on this connection (a round trip less per chunk)."""
        with connection.cursor() as cursor:
            cursor.execute(f"SET {'' if session else 'LOCAL '}synchronous_commit = off")

    def check_references_now(self) -> None:
        """The transaction's foreign keys are checked as rows go in, not at COMMIT (Django makes them deferred):
        chunks written side by side check theirs side by side, while their commits wait for their turn."""
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    def repeats(self, chunk: list[Row], *, staged: bool = True) -> dict[int, int]:
        """Each number not seen before goes into the seen table with its first line (in line order, so within the
        chunk too the first line wins); the INSERT returns the lines that went in, the others are repeats, and
        only their numbers are looked up, not the whole chunk's. With `staged` the chunk goes into the stage table
        first (its `insert` reads it there); otherwise only its numbers and lines are bound, as two arrays (a
        TEMP table's TRUNCATE and COPY cost more round trips and work than the seen table's own insert)."""
        phone, line = _columns("phone_number", "source_line")
        if staged:
            self._stage(chunk)
            source, params = f"SELECT {phone} AS phone, {line} AS line FROM {self.STAGE}", []
        else:
            source = "SELECT * FROM unnest(%s::text[], %s::integer[]) AS chunk (phone, line)"
            params = [[_phone(row) for row in chunk], [row[0] for row in chunk]]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {self.SEEN} (phone, line) {source} ORDER BY line ON CONFLICT (phone) DO NOTHING "
                "RETURNING line",
                params,
            )
            first_lines = {first for (first,) in cursor.fetchall()}
            repeated = {row[0]: row[1][0] for row in chunk if row[0] not in first_lines}
            if not repeated:
                return {}
            cursor.execute(f"SELECT phone, line FROM {self.SEEN} WHERE phone = ANY(%s)", [list(set(repeated.values()))])
            first = dict(cursor.fetchall())
            return {line: first[phone] for line, phone in repeated.items()}

    def _stage(self, rows: list[Row]) -> None:
        """The rows into the (emptied) stage table."""
        columns = ", ".join(_columns(*ROW_FIELDS))
        with connection.cursor() as cursor:
            # TRUNCATE, not DELETE: nothing vacuums a TEMP table, and every later scan would read the dead rows of
            # every chunk before (quadratic over a million rows).
            cursor.execute(f"TRUNCATE {self.STAGE}")
            with cursor.copy(f"COPY {self.STAGE} ({columns}) FROM STDIN") as copy:
                for _line, values, _sent in rows:
                    copy.write_row(values)
        self.staged = len(rows)

    def existing(self, phones: list[str]) -> dict[str, tuple[str, int | None, dict | None]]:
        columns = _columns("phone_number", "status", "lead_import", "extra")[: 4 if self.with_extra else 3]
        campaign, phone = _columns("campaign", "phone_number")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(columns)} FROM {self.table} WHERE {campaign} = %s AND {phone} = ANY(%s)",
                [self.campaign_id, phones],
            )
            # Django reads jsonb as text (its JSONField decodes); so does this raw query.
            return {
                phone: (status, source, json.loads(extra[0]) if extra else None)
                for phone, status, source, *extra in cursor
            }

    def insert(self, rows: list[Row], *, staged: bool) -> set[str]:
        """The rows are in the stage table already when `staged` (`repeats` put their chunk there): insert those of
        these lines, or the whole stage when they are all of it. Otherwise they are staged first."""
        if not staged:
            self._stage(rows)
        every = len(rows) == self.staged
        columns = ", ".join(_columns(*ROW_FIELDS))
        fixed = ", ".join(_columns(*self.FIXED))
        line = _columns("source_line")[0]
        # Typed parameters: an untyped NULL or literal in a SELECT list would be read as text.
        typed = ", ".join(f"CAST(%s AS {Lead._meta.get_field(name).db_type(connection)})" for name in self.FIXED)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {self.table} ({columns}, {fixed}) SELECT {columns}, {typed} FROM {self.STAGE} "
                + ("" if every else f"WHERE {line} = ANY(%s) ")
                + f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.phone_column}",
                [*self.fixed] if every else [*self.fixed, [row[0] for row in rows]],
            )
            return {phone for (phone,) in cursor.fetchall()}


def import_sheet(
    *,
    campaign: Campaign,
    sheet: Sheet,
    mapping: MappingProposal,
    dry_run: bool,
    lead_import_id: int | None = None,
    on_reject: Callable[[int, list, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check and (unless dry_run) write every row of an opened sheet, its columns taken as `mapping` says (see
    campaigns.importing.columns). `on_reject(line, cells, reason)` sees every
    rejected row; `progress(lines_read, lines_expected)` is called after each chunk, inside its transaction: on a
    writer thread, with that thread's connection, for a big real import on PostgreSQL (see _write_behind)."""
    return _LeadFileImport(
        campaign=campaign,
        sheet=sheet,
        mapping=mapping,
        lead_import_id=lead_import_id,
        dry_run=dry_run,
        on_reject=on_reject,
        progress=progress,
    ).run()
