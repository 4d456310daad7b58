"""Failed-rows files behind expiring signed links, answered like an object store (the contract: "a pre-signed URL,
valid for 24 hours"; its format is inferred)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode

from emulator.protocol import as_text
from emulator.settings import FILE_FORMATS


class FailedFiles:
    """The stored files by name, each kept until its link expires (a long demo run must not keep every failed
    file it ever made). Its own lock: downloads must not wait for the emulator's queue."""

    def __init__(self):
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._files: dict[str, tuple[str, bytes, float]] = {}  # name: (content type, content, expiry)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()

    def store(
        self, column_map: list[str], failed: list[tuple[int, list, str]], *, base_url: str, file_format: str, ttl: float
    ) -> str:
        """The rows not added, with the request's headers and a Reason column; returns the signed link."""
        table = [[*column_map, "Reason"], *([*map(as_text, row), reason] for _, row, reason in failed)]
        if file_format == "xlsx":
            content = _xlsx(table)
        else:
            out = io.StringIO()
            csv.writer(out).writerows(table)
            content = out.getvalue().encode()
        name = f"{secrets.token_hex(16)}.{file_format}"
        now = time.time()
        expires = str(int(now + ttl))  # whole seconds; a TTL of 0 is expired at once
        with self._lock:
            for expired in [stored for stored, (_, _, until) in self._files.items() if until <= now]:
                del self._files[expired]
            self._files[name] = (FILE_FORMATS[file_format], content, int(expires))
        query = urlencode({"expires": expires, "signature": self._sign(name, expires)})
        return f"{base_url}/files/{name}?{query}"

    def serve(self, name: str, query: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a failed-file link: 404 for an unknown file, 403 for a bad signature
        or a link past its expiry."""
        params = parse_qs(query)
        expires, signature = params.get("expires", [""])[0], params.get("signature", [""])[0]
        with self._lock:
            stored = self._files.get(name)
        signed = expires.isdigit() and hmac.compare_digest(self._sign(name, expires), signature)
        if signed and time.time() >= int(expires):  # its file may be gone already: the link says it expired
            return _store_error(403, "AccessDenied", "Request has expired")
        if stored is None:
            return _store_error(404, "NoSuchKey", "The specified key does not exist.")
        if not signed:
            return _store_error(403, "SignatureDoesNotMatch", "The request signature does not match.")
        content_type, content, _ = stored
        return 200, content_type, content

    def _sign(self, name: str, expires: str) -> str:
        return hmac.new(self._secret, f"{name}:{expires}".encode(), hashlib.sha256).hexdigest()


def _store_error(status: int, code: str, message: str) -> tuple[int, str, bytes]:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return status, "application/xml", body.encode()


def _xlsx(table: list[list[str]]) -> bytes:
    from openpyxl import Workbook  # only for --failed-file-format xlsx: the emulator is stdlib-only otherwise

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Failed")
    for row in table:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
