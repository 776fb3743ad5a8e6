"""The worker's logging at HUB_LOG_LEVEL=WARNING: the client libraries' debug lines are not even built.

faust's terminal spinner set the root logger to DEBUG (to spin on every record), so aiokafka's
per-fetch debug calls each made and formatted a record: measurable CPU in the consumer's loop."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.agents import create_app
from app.runtime import Runtime
from app.worker import HubService, HubWorker
from hub.settings import Settings


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def test_a_warning_worker_does_not_enable_debug_records(tmp_path: Path, clean_root: logging.Logger) -> None:
    settings = Settings(home=tmp_path, log_level="WARNING")
    (settings.data_dir / "faust" / settings.worker_id).mkdir(parents=True, exist_ok=True)
    runtime = Runtime(settings)
    worker = HubWorker(create_app(runtime), HubService(runtime), loglevel="warning", quiet=True)
    worker._setup_logging()
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
    assert clean_root.level == logging.WARNING
    assert not [h for h in clean_root.handlers if type(h).__name__ == "SpinnerHandler"]
