"""A bad blueprint never reaches a running worker: ``hub run`` refuses to start and names the file,
the line and the key; ``hub flows check`` says the same."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hub.settings import PROJECT_ROOT, Settings
from tests.conftest import free_port
from tests.integration.flow_harness import HUB

pytestmark = pytest.mark.integration


def test_worker_refuses_a_bad_blueprint(settings: Settings, tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", cfg)
    bad = cfg / "flows" / "internet_line" / "open.yaml"
    bad.write_text(bad.read_text(encoding="utf-8").replace("operation: activation", "operation: activate"),
                   encoding="utf-8")
    env = {**os.environ, "HUB_CONFIG_DIR": str(cfg), "HUB_TOPIC_PREFIX": settings.topic_prefix,
           "HUB_MONGO_DB": settings.mongo_db, "HUB_HTTP_PORT": str(free_port())}
    check = subprocess.run([HUB, "flows", "check"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 2
    assert f"{bad}:" in check.stderr and "partner 'ip_workbench' has no operation 'activate'" in check.stderr

    run = subprocess.run([HUB, "run"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "has no operation 'activate'" in run.stderr and str(bad) in run.stderr
    assert "Worker ready" not in run.stdout + run.stderr


BAD_V2 = """\
name: demo-open
product: demo
scenario: open
start: accept
fragments: [close-out-esop]
nodes:
  accept: {kind: auto, next: archive}
"""


def test_worker_refuses_a_bad_v2_blueprint(settings: Settings, tmp_path: Path) -> None:
    """A v2 blueprint whose fragment points at a node it does not define (the close-out pair's `done`):
    ``hub flows check`` and ``hub run`` both name the fragment's line and the blueprint it was in."""
    cfg = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", cfg)
    bad = cfg / "flows" / "demo" / "open.yaml"
    bad.parent.mkdir()
    bad.write_text(BAD_V2, encoding="utf-8")
    fragment = cfg / "flows" / "fragments" / "close_out_esop.yaml"
    line = fragment.read_text(encoding="utf-8").splitlines().index("    next: done") + 1
    expected = (f"{fragment}:{line}: nodes.close_report.next: transition to unknown node 'done' "
                f"(in blueprint demo-open, {bad})")
    env = {**os.environ, "HUB_CONFIG_DIR": str(cfg), "HUB_TOPIC_PREFIX": settings.topic_prefix,
           "HUB_MONGO_DB": settings.mongo_db, "HUB_HTTP_PORT": str(free_port())}
    check = subprocess.run([HUB, "flows", "check"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 2 and expected in check.stderr, check.stdout + check.stderr

    run = subprocess.run([HUB, "run"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert expected in run.stderr and "Worker ready" not in run.stdout + run.stderr


def test_diff_against_the_version_a_worker_stored(settings: Settings, tmp_path: Path) -> None:
    """``hub flows diff name@digest name``: the pinned version comes from MongoDB (blueprint_versions,
    written by the worker) after the file was edited."""
    import asyncio

    from typer.testing import CliRunner

    from app.cli.flows import flows_app
    from flows.graph.library import load_library
    from flows.runtime.store import OrderStoreV2
    from hub import db as hubdb

    cfg = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config" / "partners", cfg / "partners")
    shutil.copytree(PROJECT_ROOT / "config" / "flows" / "fragments", cfg / "flows" / "fragments")
    path = cfg / "flows" / "demo" / "open.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(BAD_V2 + "  done: {kind: end}\n", encoding="utf-8")
    old = load_library(cfg).by_name("demo-open")
    assert old is not None

    async def keep() -> None:
        client = hubdb.connect(settings)
        try:
            await OrderStoreV2(hubdb.database(client, settings)).keep_versions([old])
        finally:
            client.close()

    asyncio.run(keep())
    path.write_text(BAD_V2 + "  done: {kind: end, reply: {order_id: order_id}}\n", encoding="utf-8")
    env = {"HUB_MONGO_DB": settings.mongo_db}
    res = CliRunner().invoke(flows_app, ["diff", f"demo-open@{old.digest()}", "demo-open", "--config", str(cfg)],
                             env=env)
    assert res.exit_code == 1, res.output
    assert res.stdout.splitlines()[0] == f"--- demo-open@{old.digest()}  (stored version)"
    assert "~ node done [end]: reply" in res.stdout.splitlines()
    missing = CliRunner().invoke(flows_app, ["diff", "demo-open@0000000000000000", "demo-open", "--config", str(cfg)],
                                 env=env)
    assert missing.exit_code == 2 and "no version 0000000000000000 of 'demo-open'" in missing.stderr
