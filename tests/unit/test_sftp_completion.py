"""The completion rules of the SFTP source, on listings (no server): what counts as a finished upload."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connectors.sftp.completion import CompletionWatch, Verdict
from connectors.sftp.config import SftpSourceConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(**kw: Any) -> tuple[CompletionWatch, Clock]:
    cfg = SftpSourceConfig.model_validate({"partner": "boss", "connection": {"embedded": True}, "dir": "/in",
                                           "pattern": "*.csv", **kw})
    clock = Clock()
    return CompletionWatch(cfg, clock), clock


def ls(files: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """A listing: name → (size, mtime)."""
    return {name: SimpleNamespace(size=s, mtime=m) for name, (s, m) in files.items()}


def test_quiescence_counts_the_hubs_own_time_not_the_server_mtime() -> None:
    w, clock = watch(completion={"quiet_s": 20})
    files = ls({"a.csv": (100, 1)})  # mtime from long ago: still not trusted
    w.observe(files)
    assert w.verdict("a.csv", files) is Verdict.WAIT
    clock.now += 19
    w.observe(files)
    assert w.verdict("a.csv", files) is Verdict.WAIT
    grown = ls({"a.csv": (100, 2)})  # a stalled writer that moved again (same size, new mtime): the wait restarts
    clock.now += 2
    w.observe(grown)
    assert w.verdict("a.csv", grown) is Verdict.WAIT
    clock.now += 20
    w.observe(grown)
    assert w.verdict("a.csv", grown) is Verdict.READY


def test_quiet_zero_still_needs_two_listings() -> None:
    w, _ = watch(completion={"quiet_s": 0})
    files = ls({"a.csv": (10, 5)})
    w.observe(files)
    assert w.verdict("a.csv", files) is Verdict.WAIT
    w.observe(files)
    assert w.verdict("a.csv", files) is Verdict.READY


def test_empty_file_is_never_ready() -> None:
    w, clock = watch(completion={"quiet_s": 1})
    files = ls({"a.csv": (0, 5)})
    w.observe(files)
    clock.now += 2
    w.observe(files)
    assert w.verdict("a.csv", files) is Verdict.EMPTY


def test_temporary_names_and_dot_files_are_ignored_whatever_the_rule() -> None:
    for rule in ("quiescence", "rename", "done_file"):
        w, _ = watch(pattern="*", completion={"rule": rule, "quiet_s": 0})
        files = ls({"a.csv.part": (1, 1), "b.csv.filepart": (1, 1), ".c.csv": (1, 1)})
        w.observe(files)
        w.observe(files)
        assert {n: w.verdict(n, files) for n in files} == {n: Verdict.IGNORE for n in files}, rule


def test_done_file_and_rename_rules() -> None:
    w, _ = watch(completion={"rule": "done_file", "done_suffix": ".ok"}, pattern="*")
    files = ls({"a.csv": (5, 1), "b.csv": (5, 1), "b.csv.ok": (0, 1)})
    w.observe(files)
    assert [w.verdict(n, files) for n in ("a.csv", "b.csv", "b.csv.ok")] == [
        Verdict.WAIT, Verdict.READY, Verdict.IGNORE]
    w, _ = watch(completion={"rule": "rename"})
    files = ls({"a.csv": (5, 1), "a.csv.tmp": (5, 1)})
    w.observe(files)
    assert w.verdict("a.csv", files) is Verdict.READY and w.verdict("a.csv.tmp", files) is Verdict.IGNORE
