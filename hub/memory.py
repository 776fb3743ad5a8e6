"""Keep the process's memory where its Python objects are: fewer malloc arenas, freed pages returned.

Why: with the flows running, a large file's ingest left ``hub run`` hundreds of MB above its
start, and it stayed there, although the Python heap was small (``tracemalloc`` and
``gc.get_objects`` show tens of MB). The rest was glibc malloc holding *freed* memory: each thread
that allocates (motor's pool, ``asyncio.to_thread`` readers, pydantic-core validating in them)
gets its own arena, objects made in one thread are freed in another, and glibc gives pages back
to the OS only from the top of each heap. Two settings bound that:

* :func:`limit_arenas` — at most :data:`ARENA_MAX` arenas (``MALLOC_ARENA_MAX`` wins if set);
* :func:`release` — ``malloc_trim(0)`` returns every free page of every arena; the worker calls it
  periodically (cheap: a few ms), so memory a finished ingest used is given back.

Both are no-ops off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENA_MAX = 2
M_ARENA_MAX = -8  # glibc malloc.h


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 — glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc malloc arenas (call before threads start). False where it does not apply."""
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def release() -> bool:
    """Give free heap pages back to the OS; True if any were released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
