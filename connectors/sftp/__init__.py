"""SFTP (asyncssh): file-drop poller (source) and file upload (sink) — registered as ``sftp``."""

from connectors.sftp import sink as _sink  # noqa: F401
from connectors.sftp import source as _source  # noqa: F401
from connectors.sftp.config import SftpConnection, SftpSinkConfig, SftpSourceConfig

__all__ = ["SftpConnection", "SftpSinkConfig", "SftpSourceConfig"]
