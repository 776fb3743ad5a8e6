"""Stream records out of a spooled file: CSV, JSON lines or XML, in the declared encoding.

Generators over an open file: memory stays flat whatever the file size (text IO decodes
incrementally; XML uses ``iterparse`` and clears each record). Errors raise :class:`FileRejected`
with the line (or record) number, which ends up in the ``failed/<name>.reason.txt`` file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.sftp.config import SftpSourceConfig
from connectors.soap.xmlsafe import to_dict
from hub.errors import ValidationFailed


class FileRejected(ValidationFailed):
    """The file as a whole cannot be read (encoding, syntax)."""


def iter_records(path: Path, cfg: SftpSourceConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_record_number, record)``."""
    try:
        if cfg.format == "csv":
            yield from _csv(path, cfg)
        elif cfg.format == "jsonl":
            yield from _jsonl(path, cfg)
        else:
            yield from _xml(path, cfg)
    except UnicodeDecodeError as exc:
        raise FileRejected(f"file is not valid {cfg.encoding}: {exc.reason} near byte {exc.start} of a chunk"
                           ) from exc


def _csv(path: Path, cfg: SftpSourceConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    opts = cfg.csv
    with path.open(encoding=cfg.encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=opts.delimiter, quotechar=opts.quotechar, strict=True)
        columns = opts.columns
        try:
            if columns is None:
                header = next(reader, None)
                if header is None:
                    return
                columns = [c.strip().lstrip("\ufeff") for c in header]
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(columns):
                    raise FileRejected(f"line {reader.line_num}: {len(row)} fields, header has {len(columns)}")
                yield reader.line_num, dict(zip(columns, row, strict=True))
        except csv.Error as exc:
            raise FileRejected(f"line {reader.line_num}: {exc}") from exc


def _jsonl(path: Path, cfg: SftpSourceConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding=cfg.encoding) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FileRejected(f"line {n}: not JSON: {exc.msg} at column {exc.colno}") from exc
            if not isinstance(value, dict):
                raise FileRejected(f"line {n}: a record must be a JSON object")
            yield n, value


def _xml(path: Path, cfg: SftpSourceConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as fh:
        head = fh.read(4096).lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise FileRejected("DTDs and entity declarations are not allowed")
    n = 0
    try:
        for _, el in etree.iterparse(str(path), events=("end",), resolve_entities=False, no_network=True,
                                     load_dtd=False, huge_tree=False, remove_comments=True):
            if not isinstance(el.tag, str) or etree.QName(el.tag).localname != cfg.xml_record:
                continue
            n += 1
            yield el.sourceline or n, to_dict(el)
            el.clear(keep_tail=False)
            parent = el.getparent()
            while parent is not None and el.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        raise FileRejected(f"line {exc.lineno}: malformed XML: {exc.msg}") from exc
