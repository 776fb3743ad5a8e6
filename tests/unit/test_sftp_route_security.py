"""Route files of SFTP routes: host keys pinned outside the embedded server, the encryption block
and the size limit validated at load with ``file:line: key`` errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.sftp.config import SftpSourceConfig
from hub.errors import ConfigError
from routes.loader import load_route_file

HEAD = "source:\n  connector: sftp\n  partner: boss\n"


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    # a real server without known_hosts: refused at load, never connected to unverified
    (HEAD + "  connection:\n    host: sftp.boss.example\n    username: hub\n    client_key: /etc/hub/k\n"
     "  dir: /in\n", 4, "source.sftp.connection", "missing known_hosts"),
    (HEAD + "  connection: {embedded: true}\n  dir: /in\n  encryption:\n    cipher: des\n", 7,
     "source.sftp.encryption.cipher", "Input should be 'aes' or 'sm4'"),
    (HEAD + "  connection: {embedded: true}\n  dir: /in\n  encryption:\n    our_keys: [{id: k1}]\n", 7,
     "source.sftp.encryption.our_keys[0]", "give exactly one of file or env"),
    (HEAD + "  connection: {embedded: true}\n  dir: /in\n  max_file_bytes: 0\n", 6,
     "source.sftp.max_file_bytes", "greater than or equal to 1"),
])
def test_sftp_route_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                   message: str) -> None:
    path = tmp_path / "bad-route.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_route_file(path)
    assert any(p.startswith(f"{path}:{line}: {key}") and message in p for p in info.value.problems), \
        info.value.problems


def test_a_pinned_real_server_and_the_size_limit_default() -> None:
    cfg = SftpSourceConfig.model_validate({
        "partner": "boss", "dir": "/in", "connection": {"host": "h", "username": "u", "client_key": "/k",
                                                        "known_hosts": "/etc/hub/known_hosts"}})
    assert cfg.connection.known_hosts == Path("/etc/hub/known_hosts")
    assert cfg.max_file_bytes == 1024 ** 3 and cfg.encryption is None
