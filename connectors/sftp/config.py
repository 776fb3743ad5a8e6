"""Configuration of the SFTP connector: one connection field group, reused by source and sink."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.cryptocontract import CryptoContract, KeyRef, KeyWrap
from hub.errors import ConfigError


class SftpConnection(BaseModel):
    """Where and how to log in. ``embedded: true`` uses the hub's own OpenSSH (``hub infra``):
    its port, user, client key and pinned host key — and paths are inside its SFTP root."""

    model_config = ConfigDict(extra="forbid")

    embedded: bool = False
    host: str = Field(default="127.0.0.1", examples=["sftp.boss.example.com"])
    port: int = Field(default=22, ge=1, le=65535)
    username: str | None = None
    client_key: Path | None = Field(default=None, description="private key file")
    password: SecretStr | None = None
    known_hosts: Path | None = Field(default=None, description="pinned host keys; required unless embedded")
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> SftpConnection:
        if self.embedded:
            return self
        missing = [n for n in ("username", "known_hosts") if getattr(self, n) is None]
        if self.client_key is None and self.password is None:
            missing.append("client_key or password")
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (or set embedded: true)")
        return self


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    columns: list[str] | None = Field(default=None, description="column names when the file has no header row")


DEFAULT_TEMP_PATTERNS = ["*.part", "*.tmp", "*.temp", "*.filepart", "*.partial", "*.upload"]


class Completion(BaseModel):
    """When an uploaded file is finished. SFTP tells the reader nothing about a writer that still
    holds the file open (a slow or stalled client looks exactly like a finished small file), so the
    route must say which signal it trusts — and whatever it says, the source re-checks the file
    after claiming and after reading it (size and mtime unchanged), and puts a changed file back."""

    model_config = ConfigDict(extra="forbid")

    rule: Literal["quiescence", "done_file", "rename"] = Field(
        default="quiescence",
        description="quiescence: size and mtime unchanged for quiet_s, as observed by the hub's own polls "
                    "(works with any client, costs quiet_s of latency); done_file: only once "
                    "name+done_suffix exists (the partner writes it after the data file); rename: "
                    "the partner uploads under a temporary name (temp_patterns) and renames when "
                    "done, so any file matching pattern is complete")
    quiet_s: float = Field(
        default=30.0, ge=0,
        description="quiescence: how long a file's size and mtime must stay unchanged before it is "
                    "taken; longer than the longest stall of the partner's uploads (0: two polls)")
    done_suffix: str = Field(default=".done", min_length=1, examples=[".done", ".ok"],
                             description="done_file: the marker file's suffix; removed after the data file")
    late_write_watch_s: float = Field(
        default=600.0, ge=0,
        description="for this long after a file was processed, a change to it in processed_dir (a stalled "
                    "writer that resumed) puts it back to be read again; 0: off")
    temp_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TEMP_PATTERNS),
        description="names that are uploads in progress, never taken (whatever the rule); dot files "
                    "(and the hub's own claims) are always skipped")


class FileEncryption(BaseModel):
    """Whole-file encryption of a route's files (CATALOGUE D.2.2: "encrypt the whole file that
    contains sensitive data"; the documents fix no format). The format is one documented choice,
    chunked GCM with the RSA-wrapped data key in the file's header
    (``transforms/crypto/filestream.py``); what a partner may differ in is a setting here. Keys and
    ``key_wrap`` default to the partner's ``crypto:`` contract, so they are declared once."""

    model_config = ConfigDict(extra="forbid")

    cipher: Literal["aes", "sm4"] = Field(default="aes", description="GCM with AES or SM4; a file in the "
                                          "other one is refused inbound")
    key_bits: Literal[128, 192, 256] = Field(default=256, description="outbound AES data key; SM4 is 128")
    chunk_bytes: int = Field(default=64 * 1024, ge=1024, le=8 * 1024 * 1024,
                             description="outbound plaintext bytes per authenticated chunk (inbound: the header's)")
    key_wrap: KeyWrap | None = Field(default=None, description="RSA wrapping of the data key; default: the "
                                     "partner's crypto.key_wrap, else OAEP SHA-256 / MGF1 SHA-1")
    our_keys: list[KeyRef] = Field(default_factory=list, description="inbound: our private keys, newest first; "
                                   "default: the partner's crypto.our_keys")
    partner_keys: list[KeyRef] = Field(default_factory=list, description="outbound: the partner's public keys, the "
                                       "first wraps; default: the partner's crypto.partner_keys")

    def contract(self, partner: CryptoContract | None, need: Literal["our_keys", "partner_keys"],
                 where: str) -> CryptoContract:
        """The keys and wrapping in force, as a contract (what the key provider reads); a missing
        side is a :class:`ConfigError` that fails the route's start (shown on ``/readyz``)."""
        ours = self.our_keys or (partner.our_keys if partner else [])
        theirs = self.partner_keys or (partner.partner_keys if partner else [])
        if not (ours if need == "our_keys" else theirs):
            raise ConfigError(f"{where}: encryption needs {need}: none in the route's encryption block "
                              "nor in the partner's crypto: block")
        wrap = self.key_wrap or (partner.key_wrap if partner else KeyWrap())
        return CryptoContract(our_keys=ours, partner_keys=theirs, key_wrap=wrap)


class SftpSourceConfig(BaseModel):
    """Inbound file drop: poll ``dir`` for finished files matching ``pattern``, one envelope per record.

    A file is taken when it is finished by the route's ``completion`` rule; never under a temporary
    name. It is claimed by an atomic rename (two workers never both take it), checked unchanged
    after the claim and after reading, parsed as a stream, and moved to ``processed/`` only after
    every record is on Kafka; a bad file goes to ``failed/`` with ``<name>.reason.txt`` beside it.
    An empty (0-byte) file is never recorded as processed (``empty_files``).
    """

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$", examples=["boss"])
    connection: SftpConnection
    dir: str = Field(min_length=1, examples=["/drop/boss/orders"])
    pattern: str = Field(default="*.csv", examples=["*.csv", "ORD_*.txt"])
    format: Literal["csv", "jsonl", "xml"] = "csv"
    encoding: str = Field(default="utf-8", examples=["utf-8", "gbk", "gb18030"],
                          description="an ASCII-compatible encoding (lines are split on the byte \\n)")
    csv: CsvOptions = Field(default_factory=CsvOptions)
    xml_record: str = Field(default="record", description="local name of the element that is one record")
    poll_interval_s: float = Field(default=5.0, gt=0)
    completion: Completion = Field(default_factory=Completion,
                                   description="when an upload is finished (see Completion)")
    empty_files: Literal["leave", "failed"] = Field(
        default="leave",
        description="a finished 0-byte file: leave it in place untouched (an upload that has not "
                    "started writing yet; taken once it has content), or move it to failed_dir with a "
                    "reason. Never recorded as processed content either way")
    min_age_s: float | None = Field(default=None, ge=0,
                                    description="deprecated: completion.quiet_s")
    done_suffix: str | None = Field(default=None,
                                    description="deprecated: completion {rule: done_file, done_suffix}")
    processed_dir: str = "processed"
    failed_dir: str = "failed"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    claim_stale_after_s: float = Field(default=900.0, gt=0, description="re-take a claim a dead worker left")
    max_errors_reported: int = Field(default=50, ge=1)
    max_file_bytes: int | None = Field(
        default=1024 * 1024 * 1024, ge=1,
        description="largest file taken, in bytes as listed on the server (encrypted: the encrypted size); a "
                    "bigger finished file is moved to failed_dir with its size and the limit, unread; null: no limit")
    encryption: FileEncryption | None = Field(
        default=None, description="the route's files are encrypted as a whole (D.2.2): decrypted streamed, "
                                  "authenticated before any record is emitted; a clear file is rejected")
    crypto: CryptoContract | None = Field(
        default=None, description="set from the partner's crypto: block (routes/manager.py), not written here")

    @model_validator(mode="after")
    def _encoding(self) -> SftpSourceConfig:
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None
        if not 'a,\n"|'.encode(self.encoding).endswith(b'a,\n"|'):
            raise ValueError(f"encoding {self.encoding!r} is not ASCII-compatible (utf-16/32 are not supported)")
        return self

    @model_validator(mode="after")
    def _legacy_completion(self) -> SftpSourceConfig:
        """``min_age_s`` / ``done_suffix`` of older route files still mean what they meant."""
        if "completion" in self.model_fields_set:
            if self.min_age_s is not None or self.done_suffix is not None:
                raise ValueError("min_age_s / done_suffix are deprecated: set them inside completion")
            return self
        update: dict[str, object] = {}
        if self.done_suffix is not None:
            update.update(rule="done_file", done_suffix=self.done_suffix)
        if self.min_age_s is not None:
            update["quiet_s"] = self.min_age_s
        if update:
            self.completion = self.completion.model_copy(update=update)
        return self


class SftpSinkConfig(BaseModel):
    """Outbound file upload: ``name.part`` then ``posix_rename`` — the partner never sees half a file.

    ``path_template`` fields: any top-level payload field, ``yyyy mm dd yyyymmdd hhmmss`` (in
    ``timezone``), ``seq`` (per directory and day, from MongoDB), ``ext``, ``order_id``, ``envelope_id``.
    Substituted values are sanitised: no ``/``, ``\\``, ``..`` or control characters.
    """

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    connection: SftpConnection
    path_template: str = Field(
        examples=["/GW/{province}/changeProdStaDerateForm/{yyyy}/{mm}/{yyyymmdd}{seq:04d}.{ext}"]
    )
    content: Literal["base64_field", "json", "jsonl_payload"] = Field(
        default="json", description="base64_field: decode payload[content_field]; json: the payload as JSON"
    )
    content_field: str = "content_b64"
    default_ext: str = "json"
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="seeds/003 §12.2: ≤ 10 MB (the content "
                           "before encryption)")
    timezone: str = "Asia/Shanghai"
    encryption: FileEncryption | None = Field(
        default=None, description="write every file encrypted as a whole (D.2.2) with the partner's public key")
    crypto: CryptoContract | None = Field(
        default=None, description="set from the partner's crypto: block (app/delivery.py), not written here")
