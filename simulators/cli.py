"""``hub simulate`` — run the partner simulators (ESOP SOAP, 一编, 资管, workbenches, construction)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import typer

from hub.settings import load_settings

DEFAULT_PORT = 18800


def simulate(
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="port of the simulator server (all partners)"),
    host: str = typer.Option("127.0.0.1", "--host"),
) -> None:
    """Run the partner simulators (ESOP SOAP, 一编, 资管, workbenches, construction) until Ctrl-C.

    The shipped partner files call http://127.0.0.1:18800 unless HUB_SIM_URL says otherwise. Switch a
    failure mode: curl -XPOST localhost:18800/_control/esop -d '{"mode":"error"}' (ok, down, slow, error,
    http_error, duplicate_callback, late_callback); counts: GET /_calls."""
    from simulators import serve

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        runner, _ = await serve(settings.config_dir, host, port)
        from simulators.server import REST

        typer.echo(f"simulators: http://{host}:{port}  (esop SOAP /esop/soap, {len(REST.sims)} REST partners from "
                   f"simulators/partners/; control POST /_control/{{partner}}, counts GET /_calls)")
        if os.environ.get("HUB_SIM_URL", f"http://{host}:{port}") != f"http://{host}:{port}":
            typer.echo(f"note: HUB_SIM_URL={os.environ['HUB_SIM_URL']} points elsewhere", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def register_cli(root: typer.Typer) -> None:
    root.command("simulate")(simulate)
