"""Certificates made in the test (trustme): a private CA, a server certificate for 127.0.0.1 and
client certificates, written as PEM files the hub reads like real ones (never committed keys)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Issued:
    """One certificate and its key as files, and the ``ssl`` context of a client presenting it."""

    cert: Path
    key: Path


class Pki:
    """A CA in ``folder``: ``ca_file`` to trust, :meth:`server` and :meth:`client` to issue."""

    def __init__(self, folder: Path, name: str = "ca") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.name = name
        self.ca = trustme.CA(organization_name=f"hub test {name}")
        self.ca_file = folder / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def _write(self, stem: str, issued: trustme.LeafCert) -> Issued:
        cert, key = self.folder / f"{self.name}-{stem}.crt", self.folder / f"{self.name}-{stem}.key"
        for i, blob in enumerate(issued.cert_chain_pems):
            blob.write_to_path(str(cert), append=i > 0)
        issued.private_key_pem.write_to_path(str(key))
        return Issued(cert, key)

    def server(self) -> Issued:
        return self._write("server", self.ca.issue_cert("127.0.0.1", "localhost"))

    def client(self, common_name: str, *sans: str) -> Issued:
        return self._write(f"client-{common_name}", self.ca.issue_cert(*(sans or (f"{common_name}.example",)),
                                                                       common_name=common_name))

    def client_context(self, trusted: Path | None = None, present: Issued | None = None) -> ssl.SSLContext:
        """A client trusting ``trusted`` (default: this CA), presenting ``present`` if given."""
        context = ssl.create_default_context(cafile=str(trusted or self.ca_file))
        if present is not None:
            context.load_cert_chain(present.cert, present.key)
        return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str = "127.0.0.1") -> ssl.SSLObject:
    """A real TLS handshake between two in-memory ends (``ssl.MemoryBIO``, no socket); the server's
    ``SSLObject``, as the hub's listener sees its peer. Raises ``ssl.SSLError`` as a refused handshake."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server_end = server.wrap_bio(s_in, s_out, server_side=True)
    client_end = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, end in (("client", client_end), ("server", server_end)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            try:  # TLS 1.3: the server verifies the client certificate after the client is done
                client_end.read(1)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            return server_end
    raise AssertionError("handshake did not finish")
