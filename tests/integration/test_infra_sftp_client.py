"""The embedded SFTP server as a newcomer meets it: `hub infra up` in a scratch HUB_HOME, then the
stock OpenSSH ``sftp`` client run with exactly the commands the README shows (the README's code
block is executed, so the documentation cannot drift from what works).

Kafka and MongoDB point at the session's servers (external URLs), so `hub infra up` starts only
sshd here.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.settings import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
HUB = [sys.executable, "-m", "hub"]
SECTION = "## Dropping files with your own SFTP client"


def readme_example() -> tuple[list[str], list[str]]:
    """(shell lines, sftp commands) of the README's SFTP client example."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    shell = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("sftp> ")]
    commands = [ln.removeprefix("sftp> ") for ln in block.splitlines() if ln.startswith("sftp> ")]
    return shell, commands


def hub_env(home: Path, sftp_port: int, infra_settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return {**env, "HUB_HOME": str(home), "HUB_SFTP_PORT": str(sftp_port),
            "HUB_KAFKA_URL": infra_settings.kafka_bootstrap, "HUB_MONGO_URL": infra_settings.mongo_uri}


def hub(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HUB, *args], env=env, capture_output=True, text=True, timeout=60)


def stock_sftp(env: dict[str, str], commands: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The README's shell lines, with its ``sftp`` line run in batch mode (``-b -``): any failed
    command, a refused host key or a password prompt fails the run instead of waiting."""
    shell, _ = readme_example()
    script = []
    for line in shell:
        if line.startswith("sftp "):
            line = "sftp -b - -o BatchMode=yes " + line.removeprefix("sftp ")
        script.append(line)
    return subprocess.run(["bash", "-euc", "\n".join(script)], env=env, cwd=cwd, input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=30)


class Started:
    """What a test started with `hub infra up`, so the fixture can stop it and clean up."""

    def __init__(self) -> None:
        self.running: list[dict[str, str]] = []
        self.homes: set[Path] = set()


@pytest.fixture
def up(infra_settings: Settings) -> Iterator[Started]:
    started = Started()
    yield started
    for env in reversed(started.running):
        hub(["infra", "down"], env)
    for home in started.homes:
        root = (home / "sftp" / "root").resolve()  # as root: the chroot folder under /srv
        if root.parent == Path("/srv/hub-sftp"):
            shutil.rmtree(root, ignore_errors=True)


def infra_up(env: dict[str, str], started: Started) -> None:
    started.running.append(env)
    started.homes.add(Path(env["HUB_HOME"]))
    result = hub(["infra", "up"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sftp: started" in result.stdout, result.stdout


def infra_down(env: dict[str, str], started: Started) -> None:
    result = hub(["infra", "down"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    started.running.remove(env)


def test_readme_example_works_with_the_stock_sftp_client(
        tmp_path: Path, infra_settings: Settings, up: Started) -> None:
    home = tmp_path / "home"
    env = hub_env(home, free_port(), infra_settings)
    infra_up(env, up)
    _, commands = readme_example()
    name = re.search(r"put (\S+) ", commands[0]).group(1)  # type: ignore[union-attr]
    content = "ORDER_NO,PRODUCT\nB-1,internet_line\n"
    (tmp_path / name).write_text(content)
    # the route creates its folder when it starts; here only `hub infra up` runs
    mkdirs = ["-mkdir drop", "-mkdir drop/boss", "-mkdir drop/boss/orders"]

    result = stock_sftp(env, mkdirs + commands, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    landed = home / "sftp" / "root" / "drop" / "boss" / "orders"
    assert (landed / name).read_text() == content
    assert not list(landed.glob("*.part"))
    if os.geteuid() == 0:  # chrooted: the documented folder is a signpost to the real chroot
        assert (home / "sftp" / "root").resolve().parent == Path("/srv/hub-sftp")

    # the documented fingerprint is the one the server presents
    def fingerprints(text: str) -> set[str]:
        return set(re.findall(r"SHA256:\S+", text))

    documented = subprocess.run(["ssh-keygen", "-lf", str(home / "sftp" / "ssh_host_ed25519_key.pub")],
                                capture_output=True, text=True, check=True).stdout
    scanned = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", env["HUB_SFTP_PORT"], "127.0.0.1"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
    presented = subprocess.run(["ssh-keygen", "-lf", "-"], input=scanned, capture_output=True, text=True,
                               check=True).stdout
    assert fingerprints(documented) and fingerprints(documented) == fingerprints(presented)
    status = hub(["infra", "status"], env).stdout
    assert f"sftp://{pwd.getpwuid(os.getuid()).pw_name}@127.0.0.1:{env['HUB_SFTP_PORT']}/" in status


def test_two_hub_homes_on_one_port_do_not_see_each_others_files(
        tmp_path: Path, infra_settings: Settings, up: Started) -> None:
    port = free_port()
    env_a = hub_env(tmp_path / "home-a", port, infra_settings)
    env_b = hub_env(tmp_path / "home-b", port, infra_settings)
    tag = uuid.uuid4().hex[:8]
    for who in ("a", "b"):
        (tmp_path / f"ORD_{who}{tag}.csv").write_text(f"ORDER_NO\n{who}\n")

    def put(env: dict[str, str], who: str) -> None:
        result = stock_sftp(env, ["-mkdir drop", f"put ORD_{who}{tag}.csv drop/ORD_{who}{tag}.csv"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr

    def listing(env: dict[str, str]) -> str:
        result = stock_sftp(env, ["-mkdir drop", "ls -1 drop"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    infra_up(env_a, up)
    put(env_a, "a")
    infra_down(env_a, up)

    infra_up(env_b, up)  # same port, another hub home: a run of a different hub
    assert f"ORD_a{tag}.csv" not in listing(env_b)
    put(env_b, "b")
    infra_down(env_b, up)

    infra_up(env_a, up)  # the first hub again: its own leftovers only
    seen = listing(env_a)
    assert f"ORD_a{tag}.csv" in seen and f"ORD_b{tag}.csv" not in seen
