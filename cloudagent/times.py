"""Times as CloudAgent writes them ("YYYY-MM-DD HH:MM:SS", no zone), in callbacks and call summaries alike."""

from datetime import datetime

# Provider times outside these years are a placeholder or garbage ("0000-00-00 00:00:00"; 0001-01-01 became 1 BC on
# PostgreSQL, and every changelist showing it answered 500): read as unknown.
PROVIDER_YEARS = range(2000, 2101)


def provider_datetime(text: str) -> datetime | None:
    """`text` (already trimmed) as a datetime, None when unreadable or outside PROVIDER_YEARS; what a zone on it
    means is the caller's to decide."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.year in PROVIDER_YEARS else None
