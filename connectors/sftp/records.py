"""Stream records out of a spooled file: CSV, JSON lines or XML, in the declared encoding.

Generators over an open file: memory stays flat whatever the file size. Line formats are read as
bytes, one line at a time, and each line is decoded on its own, so an undecodable byte is reported
with its line *and* its byte offset in the file (a truncated GBK file: "line 3, byte 57: not valid
gbk: incomplete multibyte sequence") instead of an offset inside some internal chunk. XML uses
``iterparse`` and clears each record. Errors raise :class:`FileRejected`, whose text ends up in
``failed/<name>.reason.txt``.

Each :class:`Record` carries ``digest``: the SHA-256 of the ``seed`` and of everything in the file
up to the end of that record (XML: of the records so far). A file read again after it grew keeps
the digests of the records it already had, so their idempotency keys repeat and consumers drop
the copies.
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from lxml import etree

from connectors.sftp.config import SftpSourceConfig
from connectors.soap.xmlsafe import to_dict
from hub import jsonlimits
from hub.errors import HubError, ValidationFailed


class FileRejected(ValidationFailed):
    """The file as a whole cannot be read (encoding, syntax)."""


class ReadStopped(HubError):
    """The source is stopping: a reader thread gives up between records instead of finishing a file."""


class Record(NamedTuple):
    line: int
    data: dict[str, Any]
    digest: str


CHECK_EVERY = 512  # records between two looks at the stop flag
Opener = Callable[[], IO[bytes]]


def read_records(path: Path, cfg: SftpSourceConfig, seed: bytes = b"",
                 stop: threading.Event | None = None, opener: Opener | None = None) -> Generator[Record, None, None]:
    """Yield every record of the file; raise :class:`ReadStopped` soon after ``stop`` is set.

    ``opener`` gives the bytes to parse (an encrypted route: the authenticated plaintext of
    ``transforms.crypto.filestream.open_decrypted``); default: the file itself. A stream that
    raises :class:`~hub.errors.ValidationFailed` (a chunk that does not authenticate) rejects the
    file with that reason."""
    def plain() -> IO[bytes]:
        return path.open("rb")

    open_ = opener or plain
    if cfg.format == "csv":
        records = _csv(open_, cfg, seed)
    elif cfg.format == "jsonl":
        records = _jsonl(open_, cfg, seed)
    else:
        records = _xml(open_, cfg, seed)
    try:
        for n, record in enumerate(records, 1):
            if stop is not None and n % CHECK_EVERY == 0 and stop.is_set():
                raise ReadStopped("source stopping")
            yield record
    except FileRejected:
        raise
    except ValidationFailed as exc:  # from the opened stream itself (decryption)
        raise FileRejected(str(exc)) from exc
    finally:  # close the file now: a traceback kept for a log line must not keep it open
        records.close()


def iter_records(path: Path, cfg: SftpSourceConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_record_number, record)``."""
    for rec in read_records(path, cfg):
        yield rec.line, rec.data


class _Lines:
    """Decoded lines of a binary file, with the line number, the byte offset where the next line
    starts and a running digest — what a reason and an idempotency key need."""

    def __init__(self, fh: IO[bytes], encoding: str, seed: bytes) -> None:
        self.fh = fh
        self.encoding = encoding
        self.line = 0
        self.offset = 0
        self.hash = hashlib.sha256(seed)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.fh.readline()
        if not raw:
            raise StopIteration
        self.line += 1
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            bad = raw[exc.start:exc.end].hex(" ")
            raise FileRejected(f"line {self.line}, byte {self.offset + exc.start}: not valid {self.encoding}: "
                               f"{exc.reason} (bytes {bad})") from exc
        self.offset += len(raw)
        self.hash.update(raw)
        return text

    def digest(self) -> str:
        return self.hash.copy().hexdigest()


def _csv(open_: Opener, cfg: SftpSourceConfig, seed: bytes) -> Generator[Record, None, None]:
    opts = cfg.csv
    with open_() as fh:
        lines = _Lines(fh, cfg.encoding, seed)
        reader = csv.reader(lines, delimiter=opts.delimiter, quotechar=opts.quotechar, strict=True)
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
                yield Record(reader.line_num, dict(zip(columns, row, strict=True)), lines.digest())
        except csv.Error as exc:
            raise FileRejected(f"line {reader.line_num}: {exc}") from exc


def _jsonl(open_: Opener, cfg: SftpSourceConfig, seed: bytes) -> Generator[Record, None, None]:
    with open_() as fh:
        lines = _Lines(fh, cfg.encoding, seed)
        for line in lines:
            if not line.strip():
                continue
            n = lines.line
            try:
                value = jsonlimits.loads(line)  # nesting checked before json.loads can recurse
            except jsonlimits.TooDeep as exc:
                raise FileRejected(f"line {n}: {exc}") from exc
            except json.JSONDecodeError as exc:
                raise FileRejected(f"line {n}: not JSON: {exc.msg} at column {exc.colno}") from exc
            if not isinstance(value, dict):
                raise FileRejected(f"line {n}: a record must be a JSON object")
            yield Record(n, value, lines.digest())


def _xml(open_: Opener, cfg: SftpSourceConfig, seed: bytes) -> Generator[Record, None, None]:
    with open_() as fh:
        head = fh.read(4096).lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise FileRejected("DTDs and entity declarations are not allowed")
    n = 0
    chain = hashlib.sha256(seed)
    source = open_()
    try:
        checked = False
        for event, el in etree.iterparse(source, events=("start", "end"), resolve_entities=False,
                                         no_network=True, load_dtd=False, huge_tree=False, remove_comments=True):
            if event == "start":
                # The first start is the root: the whole prolog has been read, so a DTD placed after
                # any amount of padding (the head check above sees only 4 KB) is known here, before
                # a record is read. Found by tests/fuzz/test_properties_sftp.py.
                if not checked:
                    info = el.getroottree().docinfo
                    if info.doctype or info.internalDTD is not None:
                        raise FileRejected("DTDs and entity declarations are not allowed")
                    checked = True
                continue
            if not isinstance(el.tag, str) or etree.QName(el.tag).localname != cfg.xml_record:
                continue
            n += 1
            data = to_dict(el)
            chain.update(json.dumps(data, sort_keys=True, ensure_ascii=False).encode() + b"\n")
            yield Record(el.sourceline or n, data, chain.copy().hexdigest())
            el.clear(keep_tail=False)
            parent = el.getparent()
            while parent is not None and el.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (exc.lineno, 0)
        raise FileRejected(f"line {line}, column {column}: malformed XML: {exc.msg}") from exc
    finally:
        source.close()
