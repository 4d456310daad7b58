"""Which text encoding a delimited lead file is in, decided before any row is read.

Lead files come as they are exported: Meta Lead Ads and Excel's "Unicode Text" write tab-separated UTF-16 with a
byte-order mark, Google Sheets and most web tools write UTF-8 (Excel's "CSV UTF-8" adds a BOM), and an older
Excel's "CSV" writes the Windows code page of the machine it ran on. In order:

1. a byte-order mark (UTF-32 before UTF-16, whose mark is the first half of UTF-32 LE's);
2. UTF-16 or UTF-32 without a mark, told by where the NUL bytes of its ASCII characters fall;
3. UTF-8, if every byte of the file decodes;
4. a legacy code page, as charset-normalizer reads a sample -- except that Windows-1252 is kept whenever it
   reads the sample the same (charset-normalizer cannot tell the Latin code pages apart on a few names, and
   1252 is what Excel writes in India and the West), and Latin-1 as the last resort, since it decodes anything.

The whole file is decoded once here, so a bad byte on line 90,000 stops the import before its first row rather
than half-way; the same pass counts the lines for the progress bar. A file that cannot be decoded raises
FileEncodingError naming the encoding tried and the line, with the offending bytes in hex: never as text.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from charset_normalizer import from_bytes

PASS_BYTES = 1 << 20
SAMPLE_BYTES = 64 * 1024
MIN_COHERENCE = 0.2  # charset-normalizer's share of the text that reads as some language
# (mark, codec that consumes it, the byte order it announces)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)
_LABELS = {
    "utf-8": "UTF-8",
    "utf-16-le": "UTF-16 LE",
    "utf-16-be": "UTF-16 BE",
    "utf-32-le": "UTF-32 LE",
    "utf-32-be": "UTF-32 BE",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1",
}


class FileEncodingError(ValueError):
    """The file is not text in the encoding it appears to be in; the message names it and the line."""


@dataclass(frozen=True)
class FileEncoding:
    codec: str  # what `open(..., encoding=codec)` takes; a BOM, if any, is consumed by it
    label: str  # for the operator: "UTF-16 LE with a byte-order mark"
    lines: int  # physical lines in the file, the progress bar's estimate


def _label(codec: str) -> str:
    return _LABELS.get(codec, codec.replace("_", "-").upper())


def _wide_without_bom(head: bytes) -> str | None:
    """UTF-16/32 written without a mark: nearly every character of a lead file's header and numbers is ASCII,
    so its NUL bytes fall at fixed positions (UTF-16 LE: every odd byte; UTF-32 LE: three of every four)."""
    sample = head[: len(head) - len(head) % 4]
    if len(sample) < 8 or b"\x00" not in sample:
        return None
    quads = len(sample) // 4

    def share(offsets: tuple[int, ...]) -> float:
        return sum(1 for q in range(quads) for o in offsets if sample[4 * q + o] == 0) / (quads * len(offsets))

    if share((1, 2, 3)) > 0.9:
        return "utf-32-le"
    if share((0, 1, 2)) > 0.9:
        return "utf-32-be"
    if share((1, 3)) > 0.7 and share((0, 2)) < 0.1:
        return "utf-16-le"
    if share((0, 2)) > 0.7 and share((1, 3)) < 0.1:
        return "utf-16-be"
    return None


def _decode_whole(path: Path, codec: str, byte_order: str | None = None) -> int:
    """Decode every byte (raising UnicodeDecodeError with the line added as `.line`); the number of lines."""
    decoder = codecs.getincrementaldecoder(codec)()
    lines, last = 0, "\n"
    with path.open("rb") as f:
        while True:
            chunk = f.read(PASS_BYTES)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                before = exc.object[: exc.start].decode(byte_order or codec, errors="replace")
                exc.line = lines + before.count("\n") + 1
                raise
            lines += text.count("\n")
            if text:
                last = text[-1]
            if not chunk:
                return lines + (last != "\n")


def _fail(codec: str, label: str, exc: UnicodeDecodeError) -> FileEncodingError:
    shown = " ".join(f"0x{b:02x}" for b in exc.object[exc.start : min(exc.end, exc.start + 4)])
    return FileEncodingError(
        f"the file reads as {label}, but line {exc.line} does not: bytes {shown} are not {_label(codec)} text "
        "(save the file again as CSV UTF-8, or as Unicode Text)"
    )


def _legacy(path: Path, sample: bytes) -> str:
    """The code page for a file that is not UTF-8 (see the module docstring for why Windows-1252 is preferred)."""
    matches = from_bytes(sample)
    best = matches.best()
    # charset-normalizer files code pages that read the sample alike under one match.
    ours = next((m for m in matches if "cp1252" in m.could_be_from_charset), None)
    # A few accented names give charset-normalizer little to go on: it then ranks many code pages equal and picks
    # any (an Urdu or a Japanese one, say). Another code page is taken only when it reads the sample as a language
    # (coherence) and clearly better than Windows-1252 does.
    if best is None or best.coherence < MIN_COHERENCE:
        proposed = "cp1252"
    elif ours is not None and ours.chaos <= best.chaos + 0.1 and ours.coherence >= best.coherence - 0.1:
        proposed = "cp1252"
    else:
        proposed = best.encoding
    for codec in dict.fromkeys((proposed, "cp1252")):
        try:
            _decode_whole(path, codec)
        except (UnicodeDecodeError, LookupError):
            continue
        return codec
    return "latin-1"


def detect_encoding(path: str | Path) -> FileEncoding:
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
    for bom, codec, byte_order in _BOMS:
        if head.startswith(bom):
            label = f"{_label(byte_order)} with a byte-order mark"
            try:
                return FileEncoding(codec=codec, label=label, lines=_decode_whole(path, codec, byte_order))
            except UnicodeDecodeError as exc:
                raise _fail(byte_order, label, exc) from None
    wide = _wide_without_bom(head)
    if wide is not None:
        label = f"{_label(wide)} without a byte-order mark"
        try:
            return FileEncoding(codec=wide, label=label, lines=_decode_whole(path, wide))
        except UnicodeDecodeError as exc:
            raise _fail(wide, label, exc) from None
    try:
        return FileEncoding(codec="utf-8", label="UTF-8", lines=_decode_whole(path, "utf-8"))
    except UnicodeDecodeError as exc:
        # Around the first byte UTF-8 refuses: the head of a file is often all ASCII, which tells nothing.
        sample = exc.object[max(0, exc.start - SAMPLE_BYTES // 2) : exc.start + SAMPLE_BYTES // 2]
    codec = _legacy(path, sample)
    return FileEncoding(codec=codec, label=_label(codec), lines=_decode_whole(path, codec))
