"""One asyncssh SFTP session per connector, opened lazily and reopened after a failure.

asyncssh errors become hub errors here (the only place): connection problems are
:class:`~hub.errors.RetryableError`, so a route keeps polling and recovers when the server is back.
"""

from __future__ import annotations

import asyncio
import posixpath
from typing import Any

import asyncssh

from connectors.sftp.config import SftpConnection
from hub.embedded import EmbeddedSftp
from hub.errors import RetryableError
from hub.settings import Settings


class SftpUnavailable(RetryableError):
    """The SFTP server could not be reached or dropped the session."""


class SftpSession:
    def __init__(self, conn: SftpConnection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self._ssh: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._root: str | None = None
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
