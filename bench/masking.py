"""Issue 17 §3: what masking by field classification costs a listing page.

Masks 50 order documents (one ``GET /admin/v1/orders`` page; each ~6 KB: the order, stage data of
eight stages, forty events, calls) with the listings' masker, with the classification by field name
and without it (``classify=None``: paths and secret keys only, the behaviour before). Prints ms per
page and per document. ``python -m bench.masking [--docs 50] [--rounds 20]``
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

from app.admin.queries import masker


def order_doc(n: int) -> dict[str, Any]:
    """A stored order roughly as the v2 engine writes it (the fields that listings show)."""
    order = {"external_order_id": f"ESOP-{n}", "product": "internet_line", "scenario": "open",
             "customer": {"name": "杭州某某科技有限公司", "contact_name": "张三", "contact_phone": "13800001111",
                          "id_number": "110101199001011234"},
             "addresses": [{"role": "install", "city": "杭州", "district": "西湖区", "detail": "文一西路 1 号"}],
             "bandwidth_mbps": 100, "access_type": "PON"}
    stages = {f"stage{i}": {"status": "done", "result": {"code": "0", "msg": "ok", "manager": "王工",
                                                         "phone": "13800000000", "start_date": "2026-01-01",
                                                         "cost": 1200.5, "items": [{"k": j} for j in range(5)]}}
              for i in range(8)}
    events = [{"type": "stage.entered", "stage": f"stage{i % 8}", "at": "2026-12-01T10:00:00Z", "by": "system",
               "data": {"attempt": 1, "ok": True}} for i in range(40)]
    return {"order_id": f"ord-{n}", "partner": "esop", "status": "completed", "order": order, "state": stages,
            "events": events, "open_calls": {}, "outbox": []}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    docs = [order_doc(n) for n in range(args.docs)]
    print(f"{args.docs} documents, {len(json.dumps(docs[0], ensure_ascii=False))} bytes each")
    classified = masker({})
    for label, m in (("paths only (before)", replace(classified, classify=None)), ("classified", classified)):
        for d in docs[:2]:
            m(d)  # warm the classification cache
        started = time.perf_counter()
        for _ in range(args.rounds):
            for d in docs:
                m(d)
        ms = (time.perf_counter() - started) * 1000 / args.rounds
        print(f"{label:>20}: {ms:7.2f} ms per page, {ms * 1000 / args.docs:6.0f} µs per document")


if __name__ == "__main__":
    main()
