"""The lead import engine: stream a file row by row (readers), map its headers to the campaign's columns and check
every row against the import policy (policy), drop duplicates and write new leads in chunks (writers)."""
