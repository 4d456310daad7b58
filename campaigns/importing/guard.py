"""What a lead file may hold before the import engine looks at a row: caps on rows, columns, cell length and JSON
nesting, and cells PostgreSQL cannot store.

The readers check the file as a whole (open_sheet) and the row policy every row (RowPolicy.checked), in the
preview and the import alike, so both see the same cells and reach the same verdict: a NUL byte once passed the
dry run and failed the real import on PostgreSQL. A cell with a NUL byte or a lone surrogate (valid in JSON,
`"\\ud800"`, not in UTF-8) REJECTS its row, with the line and column named: silently dropping characters from a
name or number would send CloudAgent something the operator never wrote.
"""

from dataclasses import dataclass

from django.conf import settings

from cloudagent.spreadsheet_guard import SheetLimits


@dataclass(frozen=True)
class ImportLimits:
    max_rows: int
    max_columns: int
    max_cell_chars: int
    max_json_depth: int

    @classmethod
    def from_settings(cls) -> "ImportLimits":
        return cls(
            max_rows=settings.LEADHUB_SHEET_MAX_ROWS,
            max_columns=settings.LEADHUB_SHEET_MAX_COLUMNS,
            max_cell_chars=settings.LEADHUB_IMPORT_MAX_CELL_CHARS,
            max_json_depth=settings.LEADHUB_IMPORT_MAX_JSON_DEPTH,
        )


def sheet_limits() -> SheetLimits:
    """The spreadsheet caps (LEADHUB_SHEET_MAX_*), checked before calamine opens a workbook."""
    return SheetLimits.from_settings(settings)


def text_problem(text: str) -> str:
    """Why PostgreSQL would refuse this text ("" when it would not)."""
    if "\x00" in text:
        return "a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (an invalid character)"
    return ""


def text_cleaned(text: str) -> str:
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def row_problem(cells: list, header: list[str], limits: ImportLimits) -> tuple[list, str]:
    """(cells fit to keep, why the row is refused or ""). The cells come back cleaned and cut to the cap either
    way, so a refused row can still be shown and written to the rejected-rows file."""
    problem = ""
    if len(cells) > limits.max_columns:
        problem = f"the row has {len(cells):,} cells; at most {limits.max_columns:,} columns are read"
        cells = cells[: limits.max_columns]
    cleaned = []
    for position, cell in enumerate(cells):
        if isinstance(cell, str):
            if len(cell) > limits.max_cell_chars and not problem:
                problem = (
                    f"{_column(header, position)} holds {len(cell):,} characters; at most {limits.max_cell_chars:,}"
                )
            if (found := text_problem(cell)) and not problem:
                problem = f"{_column(header, position)} contains {found}"
            if problem:
                cell = text_cleaned(cell[: limits.max_cell_chars])
        cleaned.append(cell)
    return cleaned, problem


def _column(header: list[str], position: int) -> str:
    name = header[position] if position < len(header) and header[position] else ""
    return f"column '{name}'" if name else f"column {position + 1}"


def header_problem(header: list[str], limits: ImportLimits) -> str:
    if len(header) > limits.max_columns:
        return f"the header row has {len(header):,} columns; leadhub reads at most {limits.max_columns:,}"
    for position, name in enumerate(header):
        if found := text_problem(name):
            return f"the header of column {position + 1} contains {found}"
    return ""


def rows_problem(rows: int, limits: ImportLimits) -> str:
    if rows > limits.max_rows:
        return f"the file has about {rows:,} rows; leadhub imports at most {limits.max_rows:,} from one file"
    return ""


def json_depth_problem(text: str, limits: ImportLimits) -> str:
    """Nesting deeper than the cap, found in one pass over the text (strings skipped): json.load would raise
    RecursionError on a deep enough file, and nothing in a lead list nests more than a few levels."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limits.max_json_depth:
                return f"the JSON nests deeper than {limits.max_json_depth} levels"
        elif char in "]}":
            depth -= 1
    return ""
