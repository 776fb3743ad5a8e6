"""CSV and XLSX exports of operator listings (alerts, orders, stage durations).

Why threads and chunks: an export of 100,000 rows is seconds of CPU (openpyxl writes every cell
through Python); on the event loop it would hold every intake and callback (the autouse loop check
fails a test at 100 ms). CSV is produced in chunks of :data:`CHUNK` rows, each formatted in a thread,
so the HTTP answer is streamed; XLSX is written by openpyxl's write-only workbook (constant memory
per row) in a thread into a temporary file that is then streamed and removed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from hub import paths

__all__ = ["CHUNK", "Column", "Format", "csv_chunks", "write_xlsx", "xlsx_chunks"]

CHUNK = 2000
Format = Literal["csv", "xlsx"]
Column = tuple[str, str]  # (dotted field, header)


def cell(value: Any) -> Any:
    """A value as a spreadsheet cell: times as ISO text in UTC, lists joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "; ".join(str(cell(v)) for v in value)
    if isinstance(value, dict):
        return str(value)
    return value


def _rows(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> list[list[Any]]:
    return [[cell(paths.get(r, key)) for key, _ in columns] for r in rows]


def _csv_text(rows: list[list[Any]], header: list[str] | None) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    if header is not None:
        w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _csv_batch(batch: list[dict[str, Any]], columns: Sequence[Column], header: list[str] | None) -> bytes:
    return _csv_text(_rows(batch, columns), header)


async def csv_chunks(batches: AsyncIterator[list[dict[str, Any]]], columns: Sequence[Column]
                     ) -> AsyncIterator[bytes]:
    """UTF-8 CSV (with a BOM, so Excel reads Chinese text right), header first."""
    yield b"\xef\xbb\xbf"
    header: list[str] | None = [h for _, h in columns]
    async for batch in batches:
        yield await asyncio.to_thread(_csv_batch, batch, columns, header)
        header = None
    if header is not None:
        yield _csv_text([], header)


def write_xlsx(path: str, rows: list[list[Any]], columns: Sequence[Column], title: str) -> None:
    from openpyxl import Workbook  # type: ignore[import-untyped]  # no stubs; imported here: only exports need it

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=title[:31])
    ws.append([h for _, h in columns])
    for r in rows:
        ws.append(r)
    wb.save(path)


async def xlsx_chunks(batches: AsyncIterator[list[dict[str, Any]]], columns: Sequence[Column], title: str,
                      chunk_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The workbook written in a thread to a temporary file, then read back in chunks."""
    rows: list[list[Any]] = []
    async for batch in batches:
        rows.extend(await asyncio.to_thread(_rows, batch, columns))
    fd, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(fd)
    try:
        await asyncio.to_thread(write_xlsx, path, rows, columns, title)
        with open(path, "rb") as f:  # noqa: ASYNC230 - each read is one bounded chunk of a local file
            while True:
                data = await asyncio.to_thread(f.read, chunk_bytes)
                if not data:
                    break
                yield data
    finally:
        os.unlink(path)


CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
