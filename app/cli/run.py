"""``hub run`` — embedded servers (unless external URLs are set), the Faust worker and HTTP server;
``--role intake`` / ``--role worker`` (or ``HUB_ROLE``) runs one half of them (app/worker.py).

``HUB_PROFILE=production`` refuses to start before anything runs when a server would be embedded
or a secret is a ``dev-`` default (hub/profiles.py), and says which setting to provide."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import get_args

import typer

from app.infra import Infra
from app.infra.manager import stop_servers
from hub import memory
from hub.profiles import check_profile
from hub.settings import Settings, load_settings

log = logging.getLogger(__name__)
SERVER_STOP_TIMEOUT_S = 2.5  # after the worker: SIGKILL what has not honoured SIGTERM by then
THREAD_GRACE_S = 1.0  # then at most this for worker threads still running


ROLES: tuple[str, ...] = get_args(Settings.model_fields["role"].annotation)  # all, intake, worker


def run(
    keep_infra: bool = typer.Option(False, "--keep-infra", help="leave servers this command started running on exit"),
    role: str | None = typer.Option(
        None, "--role", metavar="|".join(ROLES),
        help="all: worker and intake (default); intake: HTTP server and routes, no agents; "
        "worker: agents, engine, delivery, jobs, HTTP for probes and /metrics only. Overrides HUB_ROLE."),
) -> None:
    """Run the hub in the foreground until Ctrl-C / SIGTERM."""
    if role is not None and role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not one of {', '.join(ROLES)}", param_hint="--role")
    memory.limit_arenas()  # before any thread exists (hub/memory.py)
    settings = load_settings(**({"role": role} if role is not None else {}))
    check_profile(settings)  # production: no embedded server, no dev- secret (ConfigError naming each)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    infra = Infra(settings)
    already = {s.name for s in infra.status() if s.answers}
    infra.up(log=lambda m: typer.echo(f"infra: {m}"))
    started = [s for s in infra.servers if not s.external and s.name not in already]
    from app.worker import run_worker  # imported late: faust is heavy and `hub infra` does not need it

    stopped = threading.Event()

    def stop_started() -> None:
        """Stop (and reap) the servers this command started; once, from whichever path gets here."""
        if keep_infra or stopped.is_set():
            return
        stopped.set()
        stop_servers(started, SERVER_STOP_TIMEOUT_S, log=lambda s, ok: typer.echo(f"infra: {s.name} stopped"))

    code: int | str | None = 0
    worker_done = time.monotonic()
    try:
        run_worker(settings, on_hard_exit=stop_started)
    except SystemExit as exc:
        code = exc.code
    finally:
        worker_done = time.monotonic()
        stop_started()
    _exit(code, since=worker_done)


def _exit(code: int | str | None, since: float | None = None) -> None:
    """Exit now, even if a worker thread is still busy.

    Why: the interpreter joins every non-daemon thread at exit, including the default executor's
    (``asyncio.to_thread``): a thread reading a large spool file kept ``hub run`` alive for a
    minute after the event loop had stopped. Whatever such a thread computes is no longer wanted
    (the file's claim was given back), so it is not waited for. The grace counts from ``since``
    (the worker's end): the servers' stop in between already gave the threads that time."""
    deadline = (time.monotonic() if since is None else since) + THREAD_GRACE_S
    for thread in threading.enumerate():  # idle executor threads end at once: the loop was closed
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not busy:
        raise SystemExit(code)
    log.warning("exiting with %d worker thread(s) still busy: %s", len(busy), ", ".join(busy))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def register_cli(root: typer.Typer) -> None:
    root.command("run")(run)
