"""Inbound SOAP throughput: the hub's ``receiveWorkOrder`` vs a bare aiohttp handler returning a
fixed SOAP body — same run, same machine, same load generator.

    python -m bench.soap [--duration 20] [--concurrency 50]

The hub path does everything a real call does: safe XML parse, WS-Security UsernameToken check,
XSD validation (lxml), mapping + code translation + WorkOrder validation, idempotency lookup and
record in MongoDB, Kafka produce with acks=all, SOAP response. The baseline answers a constant body.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import uuid

from bench._common import closed_loop, free_port, private_infra, wait_http
from bench.intake import serve_hub  # the same hub server (every shipped route, incl. /soap/esop)

RUN_ID = uuid.uuid4().hex[:8]
REQUEST = """<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:o="http://hub.example.com/ws/orders"
 xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
<soap:Header><wsse:Security><wsse:UsernameToken><wsse:Username>esop</wsse:Username>
<wsse:Password>dev-esop-soap-pass</wsse:Password></wsse:UsernameToken></wsse:Security></soap:Header>
<soap:Body><o:receiveWorkOrder><o:orderNo>{order_no}</o:orderNo><o:productCode>internet_line</o:productCode>
<o:scenarioCode>01</o:scenarioCode><o:customer><o:name>杭州某某科技有限公司</o:name>
<o:contactPhone>13800000000</o:contactPhone></o:customer><o:address><o:province>浙江</o:province>
<o:city>杭州</o:city><o:district>西湖区</o:district><o:detail>文三路 100 号 5 幢 3 楼</o:detail></o:address>
<o:bandwidthMbps>200</o:bandwidthMbps><o:accessType>PON</o:accessType></o:receiveWorkOrder></soap:Body>
</soap:Envelope>"""
FIXED = (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
         b'envelope/"><soap:Body><tns:receiveWorkOrderResponse xmlns:tns="http://hub.example.com/ws/orders">'
         b"<tns:resultCode>0</tns:resultCode><tns:resultDesc>accepted</tns:resultDesc>"
         b"</tns:receiveWorkOrderResponse></soap:Body></soap:Envelope>")
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "receiveWorkOrder"}


def make_request(i: int) -> tuple[bytes, dict[str, str]]:
    return REQUEST.format(order_no=f"S{RUN_ID}-{i}").encode(), HEADERS


def serve_bare(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=FIXED, content_type="text/xml", charset="utf-8")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/soap/esop", handler)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def load(name: str, url: str, args: argparse.Namespace) -> None:
    res = await closed_loop(name, url, make_request, concurrency=args.concurrency, duration=args.duration,
                            ok_status=200)
    print(res.line(), flush=True)
    RESULTS[name] = res.rate, res.pct(99)


RESULTS: dict[str, tuple[float, float]] = {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve-hub", "serve-bare"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if args.mode == "serve-hub":
        return serve_hub(args.port)
    if args.mode == "serve-bare":
        return serve_bare(args.port)
    with private_infra(sftp=True):
        procs = []
        try:
            ports = {"hub": free_port(), "bare": free_port()}
            for mode, port in (("serve-hub", ports["hub"]), ("serve-bare", ports["bare"])):
                procs.append(subprocess.Popen([sys.executable, "-m", "bench.soap", mode, "--port", str(port)],
                                              env=os.environ.copy()))
            for port in ports.values():
                wait_http(f"http://127.0.0.1:{port}/healthz")
            print(f"SOAP receiveWorkOrder, concurrency {args.concurrency}, {args.duration:.0f} s each "
                  f"(2-core machine; load generator in this process)")
            asyncio.run(load("bare aiohttp fixed SOAP", f"http://127.0.0.1:{ports['bare']}/soap/esop", args))
            asyncio.run(load("hub SOAP receiveWorkOrder", f"http://127.0.0.1:{ports['hub']}/soap/esop", args))
            (b_rate, b_p99), (h_rate, h_p99) = RESULTS["bare aiohttp fixed SOAP"], RESULTS["hub SOAP receiveWorkOrder"]
            print(f"hub / bare: throughput {h_rate / b_rate:.1%}, p99 {h_p99 / b_p99:.1f}x")
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)


if __name__ == "__main__":
    main()
