"""``hub exports orders | stages`` — the order list with its C.4 (7) fields (withdrawn and re-entered,
first dispatch, assessment deadline) and the stage-duration report per product (C.7), printed,
as ``--json`` or exported with ``--format csv|xlsx -O FILE``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import typer

from app.admin import console as c
from app.admin.queries import OrderFilter, parse_when
from app.ops.exports import Column, csv_chunks, xlsx_chunks
from app.ops.reports import ORDER_COLUMNS, STAGE_COLUMNS, order_batches, stage_durations

app = typer.Typer(help="Exports: the order list with its assessment fields; stage durations per product.",
                  no_args_is_help=True)
JSON = typer.Option(False, "--json", help="machine-readable output")
FORMAT = typer.Option(None, "--format", help="csv or xlsx: export to --output instead of printing")
OUTPUT = typer.Option(None, "--output", "-O", help="the file an export writes")


async def _write(batches: AsyncIterator[list[dict[str, Any]]], columns: list[Column], fmt: str, output: Path,
                 title: str) -> None:
    chunks = csv_chunks(batches, columns) if fmt == "csv" else xlsx_chunks(batches, columns, title)
    with output.open("wb") as f:
        async for chunk in chunks:
            f.write(chunk)


def _check(fmt: str | None, output: Path | None) -> None:
    if fmt is not None and (fmt not in ("csv", "xlsx") or output is None):
        c.err.print("[red]--format csv|xlsx needs --output FILE[/red]")
        raise typer.Exit(2)


@app.command()
def orders(product: str | None = typer.Option(None, "--product"), status: str | None = typer.Option(None, "--status"),
           stage: str | None = typer.Option(None, "--stage"), partner: str | None = typer.Option(None, "--partner"),
           since: str | None = typer.Option(None, "--since"), until: str | None = typer.Option(None, "--until"),
           limit: int = typer.Option(100, "--limit", "-n", min=1, max=1_000_000), fmt: str | None = FORMAT,
           output: Path | None = OUTPUT, as_json: bool = JSON) -> None:
    """Orders, newest first, with withdrawn-and-re-entered, first dispatch and assessment deadline."""
    _check(fmt, output)
    flt = OrderFilter(product=product, status=status, stage=stage, partner=partner, since=parse_when(since),
                      until=parse_when(until))

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        batches = order_batches(o.db, o.queries, flt, limit)
        if fmt is not None and output is not None:
            await _write(batches, ORDER_COLUMNS, fmt, output, "orders")
            return []
        return [r async for b in batches for r in b]

    rows = c.run(go)
    if fmt is not None:
        typer.echo(f"written to {output}")
    elif as_json:
        c.dump(rows)
    else:
        c.table(rows, ORDER_COLUMNS, title=f"{len(rows)} orders")


@app.command()
def stages(product: str | None = typer.Option(None, "--product"),
           since: str | None = typer.Option(None, "--since", help="orders received since: 30d or an ISO time"),
           until: str | None = typer.Option(None, "--until"), fmt: str | None = FORMAT, output: Path | None = OUTPUT,
           as_json: bool = JSON) -> None:
    """Time spent per stage, per product: orders, mean, median, p90, longest (minutes)."""
    _check(fmt, output)

    async def go(o: c.Ops) -> list[dict[str, Any]]:
        rows = await stage_durations(o.db, product=product, since=parse_when(since), until=parse_when(until))
        if fmt is not None and output is not None:
            async def one() -> AsyncIterator[list[dict[str, Any]]]:
                yield rows

            await _write(one(), STAGE_COLUMNS, fmt, output, "stage durations")
        return rows

    rows = c.run(go)
    if fmt is not None:
        typer.echo(f"{len(rows)} rows written to {output}")
    elif as_json:
        c.dump(rows)
    else:
        c.table(rows, STAGE_COLUMNS, title="stage durations")


def register_cli(root: typer.Typer) -> None:
    root.add_typer(app, name="exports")
