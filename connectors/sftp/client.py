"""One asyncssh SFTP session per connector, opened lazily and reopened after a failure.

asyncssh errors become hub errors here (the only place): connection problems are
:class:`~hub.errors.RetryableError`, so a route keeps polling and recovers when the server is back.
Host keys are always pinned: the embedded server's ``known_hosts`` or the connection's own (a
connection without one is refused when the route is loaded); a server whose key is not the pinned
one is refused with an error log line naming the file — it could be someone in the middle, or a
partner that rotated its key, and only an operator who checked the new fingerprint may tell.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from typing import Any

import asyncssh

from connectors.sftp.config import SftpConnection
from hub.embedded import EmbeddedSftp
from hub.errors import RetryableError
from hub.settings import Settings

log = logging.getLogger(__name__)


class SftpUnavailable(RetryableError):
    """The SFTP server could not be reached or dropped the session."""


class SftpHostKeyMismatch(SftpUnavailable):
    """The server's host key is not the pinned one. Retried like an unreachable server (the fix
    is an operator's edit of ``known_hosts``, read again on every connect), never accepted."""


class SftpSession:
    def __init__(self, conn: SftpConnection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self._ssh: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._root: str | None = None
        self._mismatch_logged = False
        if conn.embedded:
            server = EmbeddedSftp(settings)
            self._kw: dict[str, Any] = {
                "host": "127.0.0.1", "port": server.port, "username": server.username,
                "client_keys": [str(server.client_key)], "known_hosts": str(server.known_hosts),
            }
            self._root = server.remote_path(server.root)
        else:
            self._kw = {
                "host": conn.host, "port": conn.port, "username": conn.username,
                "known_hosts": str(conn.known_hosts) if conn.known_hosts else None,
                "client_keys": [str(conn.client_key)] if conn.client_key else None,
                "password": conn.password.get_secret_value() if conn.password else None,
            }

    def path(self, remote: str) -> str:
        """A configured path as the server sees it (embedded: inside the hub's SFTP root)."""
        if self._root is None:
            return remote
        return posixpath.join(self._root, remote.lstrip("/"))

    async def client(self) -> asyncssh.SFTPClient:
        async with self._lock:
            if self._sftp is None:
                try:
                    self._ssh = await asyncio.wait_for(
                        asyncssh.connect(**self._kw, login_timeout=self.conn.connect_timeout_s),
                        self.conn.connect_timeout_s,
                    )
                    self._sftp = await self._ssh.start_sftp_client()
                    self._mismatch_logged = False
                except asyncssh.HostKeyNotVerifiable as exc:
                    await self._close()
                    where = f"{self._kw['host']}:{self._kw['port']}"
                    if not self._mismatch_logged:  # once per run of failures, not every poll
                        self._mismatch_logged = True
                        log.error("SFTP %s: host key verification failed against %s (%s): connection refused. "
                                  "Not the pinned key — a changed server key or someone in between; check the "
                                  "new fingerprint with the partner before updating known_hosts",
                                  where, self._kw["known_hosts"], exc.reason)
                    raise SftpHostKeyMismatch(f"SFTP {where}: host key does not match {self._kw['known_hosts']}: "
                                              f"{exc.reason}") from exc
                except (OSError, asyncssh.Error, TimeoutError) as exc:
                    await self._close()
                    raise SftpUnavailable(f"SFTP {self._kw['host']}:{self._kw['port']} unreachable: {exc}") from exc
            return self._sftp

    async def reset(self) -> None:
        """Drop the session after an error; the next ``client()`` reconnects."""
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
        if self._ssh is not None:
            self._ssh.close()
            try:
                await asyncio.wait_for(self._ssh.wait_closed(), 3)
            except Exception:
                pass
        self._sftp = self._ssh = None

    async def close(self) -> None:
        await self.reset()
