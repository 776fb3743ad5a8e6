"""Issue 17, found by the outside probe: the embedded servers' files were world-readable (0644
under umask 022) with the customer data in clear. Real processes, real files, the operator's
usual umask."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.infra.private import narrow_tree
from app.infra.process import ManagedProcess
from app.infra.servers import MongoServer
from hub.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_an_embedded_server_writes_private_files_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    """What a server creates (its data), its log and its folders: the owner's only."""
    proc = ManagedProcess("writer", tmp_path / "run", tmp_path / "logs", marker="sh")
    data = tmp_path / "data"
    data.mkdir()
    pid = proc.start(["sh", "-c", "mkdir -p db/wt && echo customer > db/wt/collection.wt && sleep 30"], cwd=data)
    try:
        target = data / "db" / "wt" / "collection.wt"
        for _ in range(100):
            if target.exists() and target.stat().st_size:
                break
            time.sleep(0.05)
        assert mode(target) == 0o600, oct(mode(target))
        assert mode(data / "db") == 0o700 and mode(data / "db" / "wt") == 0o700
        assert mode(proc.log_file) == 0o600
        assert mode(tmp_path / "run") == 0o700 and mode(tmp_path / "logs") == 0o700
    finally:
        proc.stop(timeout=5)
    assert pid


def test_the_embedded_database_folder_is_private(tmp_path: Path, umask_022: None) -> None:
    server = MongoServer(Settings(home=tmp_path / "home"))
    server.prepare()
    assert mode(server.storage) == 0o700


def test_files_an_older_hub_left_readable_are_narrowed(tmp_path: Path, umask_022: None) -> None:
    (tmp_path / "data" / "mongo").mkdir(parents=True)
    (tmp_path / "data" / "mongo" / "orders.wt").write_text("customer")
    (tmp_path / "elsewhere").write_text("x")
    os.chmod(tmp_path / "elsewhere", 0o644)
    (tmp_path / "data" / "link").symlink_to(tmp_path / "elsewhere")
    assert mode(tmp_path / "data" / "mongo" / "orders.wt") == 0o644
    changed = narrow_tree(tmp_path / "data")
    assert changed == 3  # data, mongo, orders.wt
    assert mode(tmp_path / "data" / "mongo" / "orders.wt") == 0o600
    assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "mongo") == 0o700
    assert mode(tmp_path / "elsewhere") == 0o644  # a symlink's target is not followed
