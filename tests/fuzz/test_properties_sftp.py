"""Properties of the SFTP record readers (connectors/sftp/records.py) over generated files: any
bytes in any of the three formats and their encodings become records, or the file is rejected
with :class:`FileRejected` whose reason names where (``line N`` and, for an undecodable byte, its
byte offset) — never another exception, which would leave the file claimed with no reason file.
And an XML file's entities are never expanded into a record."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sftp.config import SftpSourceConfig
from connectors.sftp.records import FileRejected, Record, read_records
from tests.fuzz.budget import budget

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

FORMATS = st.sampled_from(["csv", "jsonl", "xml"])
ENCODINGS = st.sampled_from(["utf-8", "gbk", "gb18030", "latin-1"])
WHERE = re.compile(r"\Aline \d+(, (byte|column) \d+)?: ")
MARKER = "EXPANDED-7f3a"


def config(fmt: str, encoding: str = "utf-8", **extra: Any) -> SftpSourceConfig:
    return SftpSourceConfig.model_validate({"partner": "boss", "connection": {"embedded": True}, "dir": "/drop",
                                            "format": fmt, "encoding": encoding, **extra})


def read(data: bytes, cfg: SftpSourceConfig) -> list[Record]:
    with tempfile.TemporaryDirectory(prefix="hub-fuzz-") as folder:
        path = Path(folder) / "file"
        path.write_bytes(data)
        return list(read_records(path, cfg))


@st.composite
def line_files(draw: Any) -> bytes:
    """Bytes that look like a line file: lines of fields with delimiters, quotes, JSON fragments,
    multibyte text and stray bytes (a truncated GBK character, a NUL, a lone CR)."""
    atoms = st.sampled_from([b",", b'"', b'""', b"\r", b"\x00", b"\xd6", b"\xd6\xd0", b"{", b"}", b"[", b'"a":',
                             b"1", b"null", b"\xef\xbb\xbf", "中文".encode(), "中文".encode("gbk"), b"\\"])
    line = st.lists(st.one_of(atoms, st.binary(max_size=4)), max_size=12).map(b"".join)
    return b"\n".join(draw(st.lists(line, max_size=8)))


@budget(200)
@given(st.one_of(st.binary(max_size=1024), line_files()), FORMATS, ENCODINGS)
def test_any_bytes_are_records_or_a_rejection_that_says_where(data: bytes, fmt: str, encoding: str) -> None:
    try:
        records = read(data, config(fmt, encoding))
    except FileRejected as exc:
        reason = str(exc)
        assert WHERE.match(reason) or reason.startswith("DTDs"), reason
        return
    for record in records:
        assert record.line >= 1 and isinstance(record.data, dict) and len(record.digest) == 64


FIELD = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\x00"), max_size=8)


@budget(100)
@given(st.lists(st.lists(FIELD, min_size=3, max_size=3), max_size=6), ENCODINGS)
def test_csv_rows_written_by_the_csv_module_read_back_exactly(rows: list[list[str]], encoding: str) -> None:
    """Delimiters, quotes and multibyte text in any field: what Python's csv writer wrote (one line
    per row) is read back field for field, in the file's encoding."""
    import csv
    import io

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["a", "b", "c"])
    writer.writerows(rows)
    try:
        data = out.getvalue().encode(encoding)
    except UnicodeEncodeError:  # text this encoding cannot carry: not a file a partner can send
        return
    records = read(data, config("csv", encoding))
    assert [[r.data["a"], r.data["b"], r.data["c"]] for r in records] == rows
    assert [r.line for r in records] == list(range(2, len(rows) + 2))


def _entity_files() -> Iterator[tuple[str, bytes]]:
    pad = b"<!--" + b"x" * 5000 + b"-->"
    for kind, decl in (("internal", f'<!ENTITY e "{MARKER}">'.encode()),
                       ("file", b'<!ENTITY e SYSTEM "file:///etc/hostname">')):
        for where, prefix in (("at the top", b""), ("after 5 KB of comment", pad)):
            yield (f"{kind} entity {where}", b'<?xml version="1.0"?>' + prefix + b"<!DOCTYPE r [" + decl
                   + b"]><r><record><a>&e;</a></record></r>")


@pytest.mark.parametrize(("case", "data"), list(_entity_files()), ids=[c for c, _ in _entity_files()])
def test_an_xml_file_never_yields_an_expanded_entity(case: str, data: bytes) -> None:
    try:
        records = read(data, config("xml"))
    except FileRejected:
        return
    assert MARKER not in repr(records) and "localhost" not in repr(records), (case, records)


def test_an_xml_file_with_a_dtd_anywhere_is_rejected() -> None:
    data = dict(_entity_files())["internal entity after 5 KB of comment"]
    with pytest.raises(FileRejected):
        read(data, config("xml"))
