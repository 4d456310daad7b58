"""What lead sources really export, before the import engine reads a row: the file's encoding, the export it
comes from (source profiles), which column holds what (by header and by content), and a fast phone normaliser."""
