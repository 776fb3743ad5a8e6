"""Is an uploaded file finished? The route's completion rule, applied to successive directory listings.

SFTP has no "closed by the writer" event: a client uploading at 8 KB/s, or one stalled mid-file,
shows a file whose size and mtime simply stop moving for a while. So the source only ever takes a
file the route's rule calls finished (:class:`~connectors.sftp.config.Completion`), and the
quiescence rule measures "unchanged for ``quiet_s``" with the hub's own monotonic clock across its
own polls — never with the server's mtime, whose clock and 1-second granularity are not ours.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from connectors.sftp.config import SftpSourceConfig


class Verdict(Enum):
    IGNORE = "ignore"  # not ours: other pattern, temporary name, dot file, marker file
    WAIT = "wait"      # ours, but the rule does not call it finished yet
    EMPTY = "empty"    # finished by the rule, but 0 bytes: handled by ``empty_files``
    READY = "ready"    # finished: claim it


@dataclass
class _Seen:
    size: int
    mtime: int
    since: float  # monotonic time this (size, mtime) was first seen
    polls: int    # listings that showed it unchanged


def state(attrs: Any) -> tuple[int, int]:
    """What "unchanged" compares: size and mtime of a listing entry or a stat."""
    return int(attrs.size or 0), int(attrs.mtime or 0)


class CompletionWatch:
    """Remembers what each listing showed and answers, per file, what the source may do with it."""

    def __init__(self, cfg: SftpSourceConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.rule = cfg.completion
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, files: Mapping[str, Any]) -> None:
        """Record one listing (name → attrs); files gone from it are forgotten."""
        now = self.clock()
        seen: dict[str, _Seen] = {}
        for name, attrs in files.items():
            size, mtime = state(attrs)
            old = self._seen.get(name)
            if old is not None and (old.size, old.mtime) == (size, mtime):
                old.polls += 1
                seen[name] = old
            else:
                seen[name] = _Seen(size, mtime, now, 1)
        self._seen = seen

    def forget(self, name: str) -> None:
        """A file put back after it changed starts its quiet period again."""
        self._seen.pop(name, None)

    def quiet_for(self, name: str) -> float:
        """Seconds this file's size and mtime have been unchanged, by our own listings."""
        seen = self._seen.get(name)
        return 0.0 if seen is None else self.clock() - seen.since

    def is_temporary(self, name: str) -> bool:
        return name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in self.rule.temp_patterns)

    def verdict(self, name: str, files: Mapping[str, Any]) -> Verdict:
        """``files`` is the listing :meth:`observe` was last given."""
        if self.is_temporary(name) or not fnmatch.fnmatch(name, self.cfg.pattern):
            return Verdict.IGNORE
        rule = self.rule
        if rule.rule == "done_file":
            if name.endswith(rule.done_suffix):
                return Verdict.IGNORE
            finished = name + rule.done_suffix in files
        elif rule.rule == "rename":
            finished = True
        else:
            seen = self._seen.get(name)
            finished = seen is not None and seen.polls >= 2 and self.clock() - seen.since >= rule.quiet_s
        if not finished:
            return Verdict.WAIT
        return Verdict.EMPTY if state(files[name])[0] == 0 else Verdict.READY
