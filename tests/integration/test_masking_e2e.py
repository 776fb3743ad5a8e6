"""Issue 17 §3, "masking everywhere": an order with a known customer name, phone and ID number is
driven to completion through a real ``hub run``; then every log line the hub wrote, the admin API's
listings (orders, one order, calls, dead letters, replay history) and ``hub orders show --json`` are
read, and none may show any of the values in clear.

Why end to end: each listing had its own list of masked paths, and the probe found the gaps one by
one (a construction manager's phone in the order's stage data, patch values on array paths). Only
reading everything the hub shows catches the next gap. The values are distinctive so that a hit is
a leak, not a coincidence; they are looked for raw and as JSON escapes (a log line written with
``ensure_ascii`` shows 欧阳 as ``\\u6b27\\u9633``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
import pytest

from hub.settings import PROJECT_ROOT
from tests.integration.flow_harness import ESOP_KEY, HUB, OPERATOR, FlowEnv, flow_env  # noqa: F401  (fixture)
from tests.integration.line_orders import all_completed, stuck
from tests.support import eventually

pytestmark = pytest.mark.integration

NAME = "欧阳漏检甲"
CONTACT = "Quillon Marbleweed"
PHONE = "13977106542"
ID_NUMBER = "45010219870315671X"
#: what the construction simulator reports as the construction manager's phone (simulators/server.py):
#: a phone outside ``customer.*`` (the probe's "construction manager" gap)
MANAGER_PHONE = "13800000000"
SECRETS = {"customer name": NAME, "contact name": CONTACT, "contact phone": PHONE, "ID number": ID_NUMBER,
           "construction manager phone": MANAGER_PHONE}
CUSTOMER = {"name": NAME, "contact_name": CONTACT, "contact_phone": PHONE, "id_number": ID_NUMBER}


def leaks(where: str, text: str) -> list[str]:
    """Each secret found in ``text`` in clear (raw or JSON-escaped), named with where it was."""
    found = []
    for label, value in SECRETS.items():
        forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        if any(form in text for form in forms):
            line = next((ln for ln in text.splitlines() if any(f in ln for f in forms)), "")
            found.append(f"{where}: {label} in clear: {line.strip()[:300]}")
    return found


async def admin_get(env: FlowEnv, path: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{env.hub.url}/admin/v1/{path}", headers=OPERATOR) as r:
        text = await r.text()
        assert r.status == 200, (path, r.status, text)
        return text


def cli(env: FlowEnv, *args: str) -> str:
    """A real ``hub`` invocation with the worker's environment (same database and prefix)."""
    done = subprocess.run([HUB, *args], env=env.hub.env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout.decode("utf-8", errors="replace") + done.stderr.decode("utf-8", errors="replace")


async def test_no_sensitive_value_in_clear_in_logs_listings_or_cli(flow_env: FlowEnv) -> None:  # noqa: F811
    env = flow_env
    order_id = await env.post_order("esop", "ESOP-MASK-1", "internet_line", customer=CUSTOMER)
    try:
        await eventually(lambda: all_completed(env, [order_id]), timeout=60, interval=0.3)
    except AssertionError:
        raise AssertionError(f"order never completed: {await stuck(env, [order_id])}\n{env.hub.log_tail()}") from None
    # a second order dead-lettered (activation partner down past the 3 fast attempts): the DLQ listings
    await env.sim.mode("ip_workbench", "down")
    letter_order = await env.post_order("esop", "ESOP-MASK-2", "internet_line", customer=CUSTOMER)

    async def dead_lettered() -> bool:
        return await env.db.dead_letters.count_documents({"order_id": letter_order}) > 0

    await eventually(dead_lettered, timeout=60, interval=0.3)
    # a rejected order (the phone fails the pattern): its 400 is logged, the value must not be
    bad = {"external_order_id": "ESOP-MASK-3", "product": "internet_line", "scenario": "open",
           "customer": {**CUSTOMER, "contact_phone": f"tel:{PHONE}", "id_number": ID_NUMBER * 2}}
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/api/v1/partners/esop/orders", json=bad,
                                                    headers=ESOP_KEY) as r:
        assert r.status == 400, await r.text()
    # and over SOAP: the fault is logged (its text must not quote the phone either)
    soap = (PROJECT_ROOT / "config/routes/samples/esop-soap-order.xml").read_text(encoding="utf-8")
    soap = soap.replace("S-1001", "S-MASK-3").replace("宁波某某贸易公司", NAME).replace("13900000000", f"tel:{PHONE}")
    async with aiohttp.ClientSession() as s, s.post(f"{env.hub.url}/soap/esop", data=soap.encode(),
                                                    headers={**ESOP_KEY, "Content-Type": "text/xml; charset=utf-8",
                                                             "SOAPAction": "receiveWorkOrder"}) as r:
        answer = await r.text()
        assert r.status == 500 and "Fault" in answer, (r.status, answer)
    stored = json.dumps(await env.order(order_id), default=str, ensure_ascii=False)
    assert NAME in stored and PHONE in stored and MANAGER_PHONE in stored, "the values must be there to be masked"
    letter = await env.db.dead_letters.find_one({"order_id": letter_order})
    assert letter is not None

    found: list[str] = []
    for path in ("orders", f"orders/{order_id}", f"orders/{letter_order}", f"calls?order={order_id}",
                 f"calls?order={letter_order}", "calls", "dlq", f"dlq/{letter['_id']}", "dlq/history"):
        found += leaks(f"GET /admin/v1/{path}", await admin_get(env, path))
    for args in (("orders", "show", order_id, "--json"), ("orders", "show", order_id),
                 ("orders", "list"), ("dlq", "list"), ("dlq", "show", str(letter["_id"]))):
        found += leaks(f"hub {' '.join(args)}", await asyncio.to_thread(cli, env, *args))
    await asyncio.to_thread(env.hub.stop)  # everything it logs on the way out too
    for log in env.hub.logs:
        found += leaks(f"log {log.name}", log.read_text(encoding="utf-8", errors="replace"))
    assert not found, "\n".join(found)

