"""Cost of TLS on the hub's listener (issue 17 §4): ``python -m bench.tls [--seconds 5]``.

Prints, each next to its plain-HTTP baseline measured in the same run:
* CPU per handshake on the server side (in memory, ``ssl.MemoryBIO``), ECDSA P-256 and RSA-2048
  server keys, with and without a client certificate;
* the ``kind: client_cert`` check per request (``ClientCertVerifier.verify``);
* requests/s against a listener built as ``app.web.serve`` builds it (``connectors/tls.py`` context,
  ``app/slowclients.py`` site), a trivial handler, over kept-alive connections and with a new
  connection per request (a handshake each) — HTTP vs HTTPS.
Certificates are made on the fly (trustme, a test dependency)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web

from app import slowclients
from connectors.tls import server_context
from hub.partner_auth import ClientCertAuth, ClientCertVerifier
from hub.settings import Settings


def _write(folder: Path, name: str, leaf: trustme.LeafCert) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(cert), append=i > 0)
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, float]:
    """One in-memory handshake; the server end and the CPU seconds the server's steps took."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    spent, done = 0.0, {"s": False, "c": False}
    while not all(done.values()):
        for name, end in (("c", cli), ("s", srv)):
            if done[name]:
                continue
            started = time.process_time()
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            if name == "s":
                spent += time.process_time() - started
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    try:
        cli.read(1)
    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
        pass
    started = time.process_time()
    try:  # TLS 1.3: the server reads the client's certificate and Finished after the client is done
        srv.read(1)
    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
        pass
    return srv, spent + time.process_time() - started


def handshakes(folder: Path, n: int = 200) -> None:
    for key_type in (trustme.KeyType.ECDSA, trustme.KeyType.RSA):
        ca = trustme.CA(key_type=key_type)
        (folder / "ca.pem").write_bytes(ca.cert_pem.bytes())
        cert, key = _write(folder, f"server-{key_type.name}", ca.issue_cert("127.0.0.1", key_type=key_type))
        ccert, ckey = _write(folder, f"client-{key_type.name}", ca.issue_cert("esop.example", common_name="esop",
                                                                              key_type=key_type))
        for with_client in (False, True):
            server = server_context(cert, key, folder / "ca.pem" if with_client else None)
            client = ssl.create_default_context(cafile=str(folder / "ca.pem"))
            if with_client:
                client.load_cert_chain(ccert, ckey)
            cpu = sorted(_handshake(server, client)[1] for _ in range(n))
            print(f"handshake {key_type.name:5} {'with' if with_client else 'no  '} client cert: "
                  f"server CPU median {cpu[n // 2] * 1e6:7.0f} µs, p90 {cpu[n * 9 // 10] * 1e6:7.0f} µs")
        if key_type is trustme.KeyType.ECDSA:
            peer, _ = _handshake(server, client)
            verifier = ClientCertVerifier(ClientCertAuth(kind="client_cert", subjects=["esop"]))
            der = peer.getpeercert(binary_form=True)
            assert der is not None
            started = time.perf_counter()
            for _ in range(2_000):
                assert verifier._decide(der) is None
            first = (time.perf_counter() - started) / 2_000 * 1e6
            started = time.perf_counter()
            for _ in range(10_000):
                assert verifier.verify(peer) is None
            print(f"client_cert check: {first:.1f} µs for a certificate first seen, "
                  f"{(time.perf_counter() - started) / 10_000 * 1e6:.1f} µs/request remembered")


async def _serve(folder: Path) -> None:
    """The listener process: plain and TLS sites on one trivial app, ports printed, until killed."""
    ca = trustme.CA()
    cert, key = _write(folder, "site", ca.issue_cert("127.0.0.1"))
    (folder / "site-ca.pem").write_bytes(ca.cert_pem.bytes())

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    settings = Settings()
    plain = slowclients.site(runner, settings, "127.0.0.1", 0, None)
    secure = slowclients.site(runner, settings, "127.0.0.1", 0, server_context(cert, key))
    await plain.start()
    await secure.start()
    print(plain.port, secure.port, flush=True)
    await asyncio.Event().wait()


async def _rate(url: str, context: ssl.SSLContext | None, reuse: bool, seconds: float, clients: int) -> float:
    count = 0
    deadline = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal count
        connector = aiohttp.TCPConnector(ssl=context if context else False, force_close=not reuse)
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.monotonic() < deadline:
                async with session.get(url) as resp:
                    await resp.read()
                count += 1

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return count / seconds


async def throughput(folder: Path, seconds: float, clients: int = 20) -> None:
    """Requests/s against the listener in its own process (so the clients' CPU is not its own)."""
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.tls", "--serve", str(folder),
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        plain_port, tls_port = (await asyncio.wait_for(server.stdout.readline(), 30)).split()
        client_ssl = ssl.create_default_context(cafile=str(folder / "site-ca.pem"))
        for reuse in (True, False):
            for scheme, port, context in (("http ", plain_port, None), ("https", tls_port, client_ssl)):
                url = f"{scheme.strip()}://127.0.0.1:{int(port)}/healthz"
                rate = await _rate(url, context, reuse, seconds, clients)
                what = "kept-alive    " if reuse else "new connection"
                print(f"{what} {scheme}: {rate:7.0f} requests/s ({clients} clients; listener in its own process)")
    finally:
        server.kill()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the listener process
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    with tempfile.TemporaryDirectory() as tmp:
        handshakes(Path(tmp))
        asyncio.run(throughput(Path(tmp), args.seconds))


if __name__ == "__main__":
    main()
