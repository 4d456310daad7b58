"""The import's database writers: one pass over a sheet that checks each row by the policy, drops duplicates and
writes new leads CHUNK_ROWS at a time, each chunk in its own transaction.

What grows is one phone number per accepted row for the in-file duplicate check, and the first PREVIEW_ROWS rows
of each kind a report keeps to show. Campaign duplicates are looked up once per chunk in the database, so a
campaign of millions of leads costs no memory. Services call this module; it never touches the LeadImport record
(campaigns.services owns that).
"""

import json
from collections.abc import Callable
from contextlib import nullcontext

from django.db import connection, transaction
from django.utils import timezone

from campaigns.importing.guard import ImportLimits, row_problem
from campaigns.importing.policy import PREVIEW_ROWS, ROW_FIELDS, ImportReport, Rejected, Row, RowPolicy
from campaigns.importing.readers import Sheet, cell_text
from campaigns.models import Campaign, Lead

CHUNK_ROWS = 5000


class _LeadFileImport:
    """One pass over a sheet for one campaign. A real run commits each chunk in its own transaction, so the
    progress it reports is visible to the admin and a failure keeps what was written (the import can be undone)."""

    def __init__(
        self,
        *,
        campaign: Campaign,
        sheet: Sheet,
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
        self.report = ImportReport(columns=self.columns, header=sheet.header)
        self.policy = RowPolicy(campaign=campaign, header=sheet.header, report=self.report)
        self.width = len(sheet.header)
        self.limits = ImportLimits.from_settings()
        leads = _PostgresLeads if connection.vendor == "postgresql" else _SqlLeads
        self.lead_import_id = lead_import_id
        self.leads = leads(campaign.pk, lead_import_id, with_extra=campaign.update_existing_on_import)

    def run(self) -> ImportReport:
        chunk: list[Row] = []
        lines_read = 0
        for line, cells in self.sheet.rows:
            lines_read += 1
            if len(cells) < self.width:
                cells = cells + [""] * (self.width - len(cells))
            cells, problem = row_problem(cells, self.sheet.header, self.limits)
            try:
                if problem:
                    self.report.rows += 1
                    raise Rejected(problem)
                row = self.policy.check(line, cells)
            except Rejected as exc:
                self._reject(line, cells, str(exc))
                continue
            if row is None:
                continue
            chunk.append(row)
            if len(chunk) >= CHUNK_ROWS:
                self._flush(chunk, lines_read)
                chunk = []
        self._flush(chunk, lines_read)
        return self.report

    def _reject(self, line: int, cells: list, reason: str) -> None:
        report = self.report
        report.rejected += 1
        if len(report.rejected_rows) < PREVIEW_ROWS:
            report.rejected_rows.append((line, reason, [cell_text(c) for c in cells]))
        if self.on_reject:
            self.on_reject(line, cells, reason)

    def _listed(self, rows: list, listed: list) -> None:
        for row in rows[: PREVIEW_ROWS - len(listed)]:
            listed.append((row.line, [row.sent.get(h, "") for h in self.columns]))

    def _flush(self, chunk: list[Row], lines_read: int) -> None:
        """Sort a chunk into new, updated and duplicate rows against the campaign, and write it unless dry."""
        update_existing = self.campaign.update_existing_on_import
        with nullcontext() if self.dry_run else transaction.atomic():
            existing = self.leads.existing([row.phone for row in chunk]) if chunk else {}
            new, updates, written_before = [], [], []
            for row in chunk:
                found = existing.get(row.phone)
                if found is None:
                    new.append(row)
                elif self.lead_import_id is not None and found[1] == self.lead_import_id:
                    written_before.append(row)  # by this import, before a crash stopped it: resuming
                elif update_existing and found[0] == Lead.Status.NEW:
                    updates.append((row, found[2]))
                elif update_existing:
                    self.report.duplicate(
                        row.line, row.phone, f"already in the campaign as a {found[0]} lead; not updated"
                    )
                else:
                    self.report.duplicate(row.line, row.phone, "already in the campaign")
            if not self.dry_run:
                inserted = self.leads.insert([row.values for row in new]) if new else set()
                # A number another import added since the lookup (PostgreSQL only: SQLite's IMMEDIATE transaction
                # has held the write lock since the lookup) is a duplicate too.
                for row in new:
                    if row.phone not in inserted:
                        self.report.duplicate(row.line, row.phone, "already in the campaign")
                new = [row for row in new if row.phone in inserted]
                updated = self.leads.update(self.policy.update_fields, updates) if updates else 0
                self.report.duplicates += len(updates) - updated
            else:
                updated = len(updates)
            self.report.imported += len(new) + len(written_before)
            self.report.updated += updated
            self._listed(new, self.report.new_rows)
            self._listed([row for row, _extra in updates], self.report.updated_rows)
            if self.progress:
                self.progress(lines_read, max(lines_read, self.sheet.rows_estimate))


def _columns(*names: str) -> list[str]:
    return [connection.ops.quote_name(Lead._meta.get_field(name).column) for name in names]


class _SqlLeads:
    """The campaign's leads as an import sees them, a chunk at a time: which numbers it has, and the writes, with
    multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLite 3.35+)."""

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

    def existing(self, phones: list[str]) -> dict[str, tuple[str, int | None, dict | None]]:
        """phone -> (status, the import that wrote it, extra if the campaign updates existing leads) for the numbers
        the campaign has."""
        fields = ("phone_number", "status", "lead_import", "extra")[: 4 if self.with_extra else 3]
        found = Lead.objects.filter(campaign_id=self.campaign_id, phone_number__in=phones).values_list(*fields)
        return {phone: (status, source, extra[0] if extra else None) for phone, status, source, *extra in found}

    def _adapt(self, values: tuple) -> tuple:
        phone, name, priority, expiry, agent_id, skill, extra, line = values
        ops = connection.ops
        extra = {k: v for k, v in extra.items() if v}
        return (phone, name, priority, ops.adapt_datefield_value(expiry), agent_id, skill,
                ops.adapt_json_value(extra, None), line)  # fmt: skip

    def insert(self, rows: list[tuple]) -> set[str]:
        columns = ", ".join(_columns(*ROW_FIELDS, *self.FIXED))
        width = len(ROW_FIELDS) + len(self.FIXED)
        inserted = set()
        with connection.cursor() as cursor:
            for start in range(0, len(rows), self.BATCH):
                batch = rows[start : start + self.BATCH]
                values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(batch))
                params = [p for row in batch for p in (*self._adapt(row), *self.fixed)]
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
        for row, old_extra in updates:
            adapted = self._adapt(row.values)
            values = []
            for name in fields:
                if name == "extra":
                    merged = {k: v for k, v in {**(old_extra or {}), **row.values[position["extra"]]}.items() if v}
                    values.append(connection.ops.adapt_json_value(merged, None))
                else:
                    values.append(adapted[position[name]])
            params.append((*values, self.now, self.campaign_id, row.phone, Lead.Status.NEW.value))
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {self.table} SET {sets} WHERE {where}", params)
            return cursor.rowcount


class _PostgresLeads(_SqlLeads):
    """COPY into a TEMP table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING: ~8x faster than
    row inserts into the indexed leads table (docs/performance.md, Import). Lookups bind the chunk's numbers as one
    array: an IN list of 5,000 parameters costs more to build and bind than to run."""

    TEMP = "leadhub_import_rows"

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

    def insert(self, rows: list[tuple]) -> set[str]:
        columns = ", ".join(_columns(*ROW_FIELDS))
        fixed = ", ".join(_columns(*self.FIXED))
        with connection.cursor() as cursor:
            # ON COMMIT DELETE ROWS empties it with each chunk's transaction; it lives as long as the connection.
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.TEMP} ON COMMIT DELETE ROWS "
                f"AS SELECT {columns} FROM {self.table} WITH NO DATA"
            )
            with cursor.copy(f"COPY {self.TEMP} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(self._adapt(row))
            # Typed parameters: an untyped NULL or literal in a SELECT list would be read as text.
            typed = ", ".join(f"CAST(%s AS {Lead._meta.get_field(name).db_type(connection)})" for name in self.FIXED)
            cursor.execute(
                f"INSERT INTO {self.table} ({columns}, {fixed}) SELECT {columns}, {typed} FROM {self.TEMP} "
                f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.phone_column}",
                self.fixed,
            )
            return {phone for (phone,) in cursor.fetchall()}


def import_sheet(
    *,
    campaign: Campaign,
    sheet: Sheet,
    dry_run: bool,
    lead_import_id: int | None = None,
    on_reject: Callable[[int, list, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check and (unless dry_run) write every row of an opened sheet. `on_reject(line, cells, reason)` sees every
    rejected row; `progress(lines_read, lines_expected)` is called after each chunk, inside its transaction."""
    return _LeadFileImport(
        campaign=campaign,
        sheet=sheet,
        lead_import_id=lead_import_id,
        dry_run=dry_run,
        on_reject=on_reject,
        progress=progress,
    ).run()
