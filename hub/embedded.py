"""Where the embedded SFTP server of the default profile keeps its keys, known_hosts and root.

Core knowledge, not infrastructure code: ``app/infra/servers.py`` starts sshd with these files, and
the SFTP connector (``connectors/sftp/client.py``) logs in with them when a route says
``embedded: true`` — neither imports the other. Everything is derived from the settings
(``HUB_HOME``, ``HUB_SFTP_PORT``), so both always agree.
"""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

from hub.settings import Settings

CHROOT_BASE = Path("/srv/hub-sftp")


def home_digest(home: Path) -> str:
    """Short, stable name for one ``HUB_HOME`` (its resolved path), used for folders outside it."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


class EmbeddedSftp:
    """The embedded SFTP server's layout for one ``HUB_HOME`` (mixed into the server that runs it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def port(self) -> int:
        return self.settings.sftp_port

    @property
    def url(self) -> str:
        return f"sftp://{self.username}@127.0.0.1:{self.port}/"

    @property
    def folder(self) -> Path:
        return self.settings.home / "sftp"

    @property
    def host_key(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        """Private key a client (the hub's SFTP connector, tests, the ``sftp`` tool) logs in with."""
        return self.folder / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    @property
    def username(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    @property
    def chrooted(self) -> bool:
        return os.geteuid() == 0

    @property
    def root(self) -> Path:
        """The folder SFTP clients see as ``/``.

        Chrooted, it cannot live in ``HUB_HOME`` (usually under a world-writable temp folder or
        owned by a user, which sshd refuses), so it is ``/srv/hub-sftp/<digest of HUB_HOME>``:
        one folder per hub home, whatever the port (``HUB_SFTP_ROOT`` overrides it).
        """
        if self.chrooted:
            override = os.environ.get("HUB_SFTP_ROOT")
            return Path(override) if override else CHROOT_BASE / home_digest(self.settings.home)
        return self.folder / "root"

    @property
    def root_link(self) -> Path:
        """Where an operator looks for the root: the root itself, or a symlink to it when chrooted."""
        return self.folder / "root"

    @property
    def host_public_key(self) -> Path:
        """``ssh-keygen -lf`` on this file prints the fingerprint a client is asked to trust."""
        return Path(str(self.host_key) + ".pub")

    def remote_path(self, local: Path) -> str:
        """Path a client uses for a file under ``root``."""
        rel = local.relative_to(self.root)
        return "/" + str(rel) if self.chrooted else str(local)

    def local_path(self, remote: str) -> Path:
        return self.root / remote.lstrip("/") if self.chrooted else Path(remote)
