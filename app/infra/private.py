"""``HUB_HOME`` kept private to the hub's OS user: folders 0700, files 0600.

The embedded database holds the customer data in clear (names, phones, ID numbers, addresses), the
logs quote partner requests, the SFTP folder holds the hub's keys. Under the usual umask 022 every
file the embedded servers created was world-readable (0644) — any local account could read the
orders. So:

* :func:`private_dir` creates a folder 0700 (and narrows an existing one);
* :data:`CHILD_UMASK` is the umask every embedded server starts with (``ManagedProcess.start``):
  what they create is 0600 / 0700 whatever the operator's shell umask is;
* :func:`narrow_tree` takes group and other bits off what an older hub left behind (``hub infra
  up`` runs it on ``HUB_HOME`` once per start; a few hundred files, no content read).

Production (``HUB_PROFILE=production``) runs no embedded server: the real MongoDB, Kafka and SFTP
servers must bring their own authentication and encryption at rest (docs/security.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
CHILD_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """``path`` (and missing parents) as a folder only its owner can enter."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~0o077 | 0o700)
    return path


def private_file(path: Path) -> int:
    """A file descriptor of ``path`` opened for appending, created 0600 (an existing one narrowed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~0o077)
    return fd


def narrow_tree(root: Path, *, keep: tuple[Path, ...] = ()) -> int:
    """Remove group/other permission bits under ``root`` (symlinks not followed, ``keep`` left as is);
    returns how many entries changed."""
    changed = 0
    if not root.exists():
        return 0
    kept = {p.resolve() for p in keep}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() not in kept]
        for name in [".", *dirnames, *filenames]:
            entry = Path(dirpath) if name == "." else Path(dirpath) / name
            try:
                st = entry.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & 0o077:
                continue
            os.chmod(entry, stat.S_IMODE(st.st_mode) & ~0o077)
            changed += 1
    return changed
