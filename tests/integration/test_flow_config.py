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
    bad = cfg / "flows" / "internet_line_open.yaml"
    bad.write_text(bad.read_text(encoding="utf-8").replace("operation: activation", "operation: activate"),
                   encoding="utf-8")
    env = {**os.environ, "HUB_CONFIG_DIR": str(cfg), "HUB_TOPIC_PREFIX": settings.topic_prefix,
           "HUB_MONGO_DB": settings.mongo_db, "HUB_HTTP_PORT": str(free_port())}
    check = subprocess.run([HUB, "flows", "check"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 2
    assert f"{bad}:" in check.stderr and "partner 'ip_workbench' has no outbound operation 'activate'" in check.stderr

    run = subprocess.run([HUB, "run"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "has no outbound operation 'activate'" in run.stderr and str(bad) in run.stderr
    assert "Worker ready" not in run.stdout + run.stderr
