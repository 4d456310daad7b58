"""Encoding detection for delimited lead files: every Unicode form with and without a byte-order mark, UTF-8,
legacy code pages; and errors that name the encoding and the line without showing bytes as text."""

import codecs
import csv

import pytest

from campaigns.importing.encodings import FileEncodingError, detect_encoding

HEADER = ["full_name", "phone_number", "city"]
ROWS = [
    ["Ravi Kumar", "p:+919876543210", "Pune"],
    ["José Fernandes", "p:+919876543211", "Panaji"],
    ["रवि कुमार", "p:+919876543212", "नासिक"],
    ["Zoë D'Souza", "p:+919876543213", "Mumbai"],
]


def _write(path, encoding, rows=ROWS, bom=b""):
    text = "".join("\t".join(row) + "\r\n" for row in [HEADER, *rows])
    path.write_bytes(bom + text.encode(encoding))
    return path


def _read(path):
    found = detect_encoding(path)
    with path.open(encoding=found.codec, newline="") as f:
        return found, list(csv.reader(f, delimiter="\t"))


@pytest.mark.parametrize(
    "encoding, bom, label",
    [
        ("utf-8", b"", "UTF-8"),
        ("utf-8", codecs.BOM_UTF8, "UTF-8 with a byte-order mark"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "UTF-16 LE with a byte-order mark"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16 BE with a byte-order mark"),
        ("utf-16-le", b"", "UTF-16 LE without a byte-order mark"),
        ("utf-16-be", b"", "UTF-16 BE without a byte-order mark"),
        ("utf-32-le", codecs.BOM_UTF32_LE, "UTF-32 LE with a byte-order mark"),
        ("utf-32-be", codecs.BOM_UTF32_BE, "UTF-32 BE with a byte-order mark"),
        ("utf-32-le", b"", "UTF-32 LE without a byte-order mark"),
        ("utf-32-be", b"", "UTF-32 BE without a byte-order mark"),
    ],
)
def test_unicode_files_read_back_as_written(tmp_path, encoding, bom, label):
    found, table = _read(_write(tmp_path / "leads.tsv", encoding, bom=bom))
    assert found.label == label
    assert table == [HEADER, *ROWS]  # no BOM left on the first header, no NULs anywhere
    assert found.lines == len(ROWS) + 1


@pytest.mark.parametrize(
    "encoding, rows",
    [
        ("cp1252", [["José Fernandes", "9876543210", "Panaji"], ["Zoë D'Souza – Ltd", "9876543211", "Köln"]]),
        ("cp1251", [["Иван Петров", "9876543210", "Москва"], ["Мария Иванова", "9876543211", "Казань"]] * 20),
    ],
)
def test_legacy_code_pages(tmp_path, encoding, rows):
    found, table = _read(_write(tmp_path / "leads.tsv", encoding, rows=rows))
    assert found.codec == encoding
    assert table == [HEADER, *rows]


def test_a_stray_byte_far_down_a_utf8_file_is_seen_before_the_first_row(tmp_path):
    rows = [["Ravi Kumar", f"98765{i:05d}", "Pune"] for i in range(90_000)] + [["Zoë", "9876599999", "Goa"]]
    path = _write(tmp_path / "leads.tsv", "cp1252", rows=rows)
    found, table = _read(path)
    assert found.codec == "cp1252"
    assert table[-1] == ["Zoë", "9876599999", "Goa"]


def test_a_broken_utf16_file_names_the_encoding_and_the_line_never_garbage(tmp_path):
    path = _write(tmp_path / "leads.tsv", "utf-16-le", bom=codecs.BOM_UTF16_LE)
    data = path.read_bytes()
    third_line = data.index("José".encode("utf-16-le"))
    path.write_bytes(data[:third_line] + "\ud800".encode("utf-16-le", "surrogatepass") + data[third_line + 2 :])
    with pytest.raises(FileEncodingError) as caught:
        detect_encoding(path)
    message = str(caught.value)
    assert "UTF-16 LE" in message and "line 3" in message and "0x00 0xd8" in message
    assert "\x00" not in message and "full_name" not in message


def test_a_truncated_utf16_file_is_an_error_not_a_lost_character(tmp_path):
    path = _write(tmp_path / "leads.tsv", "utf-16-le", bom=codecs.BOM_UTF16_LE)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(FileEncodingError, match="UTF-16 LE"):
        detect_encoding(path)
