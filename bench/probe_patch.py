"""Issue 17 probe: what an amplifying replay patch costs, bounded and unbounded.

17 ``copy`` operations from the root of a dead letter's payload (a 766-byte patch): with the limit
(``HUB_REPLAY_PATCH_MAX_BYTES``, default 1 MiB) the patch stops at the operation that crosses it;
without (``--unbounded``, the old behaviour) it builds the whole document. Prints ms, bytes built
and how many operations ran. ``python -m bench.probe_patch [--unbounded]``
"""

from __future__ import annotations

import argparse
import json
import time

from app.admin.patch import MAX_RESULT_BYTES, PatchTooLarge, apply_patch, parse_patch

PAYLOAD = {"order_id": "ord-1", "operation": "notifyOrderResult",
           "request": {"orderId": "E-1", "resultCode": "1", "resultDesc": "开通完成", "finishTime": "2026-12-01"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unbounded", action="store_true", help="no result limit (the behaviour before issue 17)")
    ap.add_argument("--ops", type=int, default=17)
    args = ap.parse_args()
    patch = [{"op": "copy", "from": "", "path": f"/k{n}"} for n in range(args.ops)]
    print(f"patch: {len(json.dumps(patch))} bytes, {len(patch)} operations; payload {len(json.dumps(PAYLOAD))} bytes")
    limit = 1 << 40 if args.unbounded else MAX_RESULT_BYTES
    started = time.perf_counter()
    try:
        doc = apply_patch(PAYLOAD, parse_patch(patch), max_bytes=limit)
        outcome = f"built {len(json.dumps(doc, ensure_ascii=False).encode())} bytes"
    except PatchTooLarge as exc:
        outcome = f"refused: {exc}"
    print(f"{'unbounded' if args.unbounded else f'limit {limit}'}: {(time.perf_counter() - started) * 1000:.0f} ms, "
          f"{outcome}")


if __name__ == "__main__":
    main()
