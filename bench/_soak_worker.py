"""``hub run`` with one more Prometheus gauge, ``bench_asyncio_tasks``: the tasks of the worker's event
loop, for bench/soak.py's leak check (the product exports no such gauge; /proc shows threads, not tasks).

    python -m bench._soak_worker      # exactly ``hub run``, plus the gauge on /metrics

``/metrics`` is rendered on the worker's event loop (app/web.py), so ``asyncio.all_tasks()`` there
counts that loop's tasks; called from any other thread it reports -1.
"""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import Gauge


def _tasks() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop in this thread
        return -1.0


Gauge("bench_asyncio_tasks", "tasks of the worker's event loop (bench/soak.py)").set_function(_tasks)

if __name__ == "__main__":
    from app.cli import main

    sys.argv = ["hub", "run", *sys.argv[1:]]
    main()
