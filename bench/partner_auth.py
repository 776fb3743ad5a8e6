"""CPU cost of the partner HMAC check and the nonce cache (issue 17 §5): ``python -m bench.partner_auth``.

Prints µs per verified request for a few body sizes, and the nonce cache's memory at its bound."""

from __future__ import annotations

import secrets
import time
import tracemalloc

from hub.partner_auth import HmacAuth, HmacVerifier, NonceCache, signed_headers

SECRET = "b" * 40
PATH = "/api/v1/partners/esop/orders"


def per_request(size: int, n: int = 20_000) -> float:
    verifier = HmacVerifier(HmacAuth(kind="hmac", secret=SECRET, max_nonces=n + 1))
    body = b"x" * size
    requests = [signed_headers(SECRET, "POST", PATH, body) for _ in range(n)]
    started = time.perf_counter()
    for headers in requests:
        assert verifier.verify("POST", PATH, headers, body) is None
    return (time.perf_counter() - started) / n * 1e6


def cache_bytes(entries: int = 100_000) -> float:
    tracemalloc.start()
    cache = NonceCache(600, entries)
    for _ in range(entries):
        cache.add(secrets.token_hex(16))
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / entries


if __name__ == "__main__":
    for size in (1_024, 16_384, 1_048_576):
        print(f"verify, body {size:>9} B: {per_request(size, 2_000 if size > 100_000 else 20_000):8.1f} µs/request")
    print(f"nonce cache at 100,000 entries: {cache_bytes():.0f} B/entry")
