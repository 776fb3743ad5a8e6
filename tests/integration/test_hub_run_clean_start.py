"""A normal start is quiet: `hub run` on its embedded defaults, in a scratch HUB_HOME, starts its
own servers and becomes ready without logging a single ERROR line. (It used to log two
``Unable connect`` ERRORs: the Kafka readiness probe ran a Kafka client against the broker's
port before the broker was listening.) An operator who greps for ERROR must find real ones only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import free_port

HUB = [sys.executable, "-m", "hub"]
ERROR_LINE = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback")


def test_hub_run_starts_its_servers_without_error_lines(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}  # embedded defaults only
    env.update({
        "HUB_HOME": str(tmp_path / "home"),
        "HUB_KAFKA_PORT": str(free_port()),
        "HUB_MONGO_PORT": str(free_port()),
        "HUB_SFTP_PORT": str(free_port()),
        "HUB_HTTP_PORT": str(free_port()),
    })
    proc = subprocess.Popen([*HUB, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    ready: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{env['HUB_HTTP_PORT']}/readyz", timeout=2) as r:
                    ready = json.loads(r.read())
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.3)
        started = list(lines)  # everything logged from the command to readiness
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        subprocess.run([*HUB, "infra", "down"], env=env, capture_output=True, timeout=60)  # if it left any
        sftp_root = (tmp_path / "home" / "sftp" / "root").resolve()  # as root: a chroot folder under /srv
        if sftp_root.parent == Path("/srv/hub-sftp"):
            shutil.rmtree(sftp_root, ignore_errors=True)
    assert ready.get("status") == "ready", (ready, "".join(lines)[-3000:])
    assert any("kafka: started" in ln for ln in started), "hub run did not start its own broker"
    errors = [ln.rstrip() for ln in started if ERROR_LINE.search(ln)]
    assert not errors, "\n".join(errors)
