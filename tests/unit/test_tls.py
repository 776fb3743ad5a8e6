"""TLS pieces without a server (issue 17 §4-5): the contexts of connectors/tls.py, the
``kind: client_cert`` check on real handshakes (in memory, tests/tlscerts.py), the production
profile's TLS refusals, the settings' pairs."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.rest.sink import RestSinkConfig
from connectors.tls import OutboundTls, client_context, is_tls_refusal, server_context
from hub.errors import ConfigError
from hub.partner_auth import ClientCertAuth, ClientCertVerifier
from hub.partners import RestInbound
from hub.profiles import insecure_tls_problems, production_problems, tls_problems
from hub.settings import Settings
from tests.tlscerts import Pki, handshake


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def listener(pki: Pki, client_ca: bool = True) -> ssl.SSLContext:
    server = pki.server()
    return server_context(server.cert, server.key, pki.ca_file if client_ca else None)


def test_listener_context_is_tls12_at_least_without_compression_and_asks_for_client_certificates(pki: Pki) -> None:
    context = listener(pki)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION and context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_OPTIONAL  # API key / HMAC partners present none
    assert listener(pki, client_ca=False).verify_mode == ssl.CERT_NONE


def test_listener_with_a_missing_key_is_a_config_error_naming_the_variables(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        server_context(pki.server().cert, tmp_path / "nope.key")
    assert "HUB_HTTP_TLS_KEY" in exc.value.problems[0]


def verify(pki: Pki, auth: dict[str, object], present: object) -> str | None:
    peer = handshake(listener(pki), pki.client_context(present=present))  # type: ignore[arg-type]
    refused = ClientCertVerifier(ClientCertAuth.model_validate({"kind": "client_cert", **auth})).verify(peer)
    return None if refused is None else refused.detail


def test_client_cert_by_name_fingerprint_and_issuer(pki: Pki) -> None:
    esop = pki.client("esop-client", "esop.partner.example", "hub@esop.example")
    assert verify(pki, {"subjects": ["esop-client"]}, esop) is None  # the CN
    assert verify(pki, {"subjects": ["ESOP.partner.example"]}, esop) is None  # a DNS SAN
    assert verify(pki, {"subjects": ["hub@esop.example"]}, esop) is None  # an e-mail SAN
    assert "subject name" in (verify(pki, {"subjects": ["group-client"]}, esop) or "")
    der = handshake(listener(pki), pki.client_context(present=esop)).getpeercert(binary_form=True)
    assert der is not None
    pin = hashlib.sha256(der).hexdigest()
    colons = ":".join(pin[i:i + 2] for i in range(0, 64, 2)).upper()
    assert verify(pki, {"fingerprints": [colons]}, esop) is None
    assert "fingerprint" in (verify(pki, {"fingerprints": ["0" * 64]}, esop) or "")
    assert "fingerprint" in (verify(pki, {"fingerprints": ["0" * 64], "subjects": ["esop-client"]}, esop) or "")
    assert verify(pki, {"subjects": ["esop-client"], "ca_file": str(pki.ca_file)}, esop) is None
    other = Pki(pki.folder / "other", "other")  # trusted by the listener too, not this partner's issuer
    assert "partner's CA" in (verify(pki, {"subjects": ["esop-client"], "ca_file": str(other.ca_file)}, esop) or "")


def test_client_cert_refuses_plain_http_and_no_certificate(pki: Pki) -> None:
    verifier = ClientCertVerifier(ClientCertAuth(kind="client_cert", subjects=["esop-client"]))
    assert "HTTPS" in (refused := verifier.verify(None)).detail and refused.status == 401  # type: ignore[union-attr]
    assert refused.headers["WWW-Authenticate"].startswith("TLS-Client-Certificate")  # type: ignore[union-attr]
    anonymous = handshake(listener(pki), pki.client_context())
    assert "no verified client certificate" in verifier.verify(anonymous).detail  # type: ignore[union-attr]


def test_a_certificate_from_an_untrusted_ca_fails_the_handshake(pki: Pki) -> None:
    foreign = Pki(pki.folder / "foreign", "foreign").client("esop-client")
    with pytest.raises(ssl.SSLError):
        handshake(listener(pki), pki.client_context(present=foreign))


def test_client_cert_config_needs_names_or_fingerprints_and_valid_fingerprints() -> None:
    with pytest.raises(ValidationError, match="subjects or fingerprints"):
        RestInbound.model_validate({"auth": {"kind": "client_cert"}})
    with pytest.raises(ValidationError, match="64 hex digits"):
        RestInbound.model_validate({"auth": {"kind": "client_cert", "fingerprints": ["abc"]}})
    inbound = RestInbound.model_validate({"auth": {"kind": "client_cert", "subjects": ["esop-client"]}})
    assert isinstance(inbound.auth, ClientCertAuth)


def test_outbound_context_trusts_only_the_partners_ca_and_presents_the_client_certificate(pki: Pki) -> None:
    mine = pki.client("hub-client")
    tls = OutboundTls(ca_file=pki.ca_file, client_cert=mine.cert, client_key=mine.key)
    context = client_context(tls, "resource")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1  # the partner's CA, not the system store
    peer = handshake(listener(pki), context)
    assert peer.getpeercert()  # the listener saw and verified our certificate
    with pytest.raises(ssl.SSLCertVerificationError) as exc:  # a server from another CA
        handshake(listener(Pki(pki.folder / "x", "x")), context)
    assert is_tls_refusal(exc.value)
    assert not is_tls_refusal(ConnectionRefusedError())
    assert not is_tls_refusal(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))  # cut off: retried


def test_outbound_tls_config_rules(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="client_cert and client_key go together"):
        OutboundTls(client_cert=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="ignored"):
        OutboundTls(insecure_skip_verify=True, ca_file=tmp_path / "ca.pem")
    with pytest.raises(ValidationError, match="https"):
        RestSinkConfig.model_validate({"base_url": "http://partner.example", "tls": {"ca_file": "/x.pem"},
                                       "operations": {"a": {"path": "/a"}}})
    with pytest.raises(ConfigError, match="CA bundle"):
        client_context(OutboundTls(ca_file=tmp_path / "missing.pem"))


def test_insecure_skip_verify_is_logged_and_refused_in_production(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    context = client_context(OutboundTls(insecure_skip_verify=True), "lab")
    assert context.verify_mode == ssl.CERT_NONE
    assert any(r.levelname == "WARNING" and "insecure_skip_verify" in r.getMessage() for r in caplog.records)
    partner = tmp_path / "lab.yaml"
    lab = "name: lab\noutbound:\n  config:\n    tls:\n      insecure_skip_verify: {}\n"
    partner.write_text(lab.format("true"), encoding="utf-8")
    (problem,) = insecure_tls_problems(partner)
    assert problem.startswith(f"{partner}:5: outbound.config.tls.insecure_skip_verify: production never skips")
    partner.write_text(lab.format("false"), encoding="utf-8")
    assert insecure_tls_problems(partner) == []


def test_production_needs_tls_unless_told_it_ends_at_a_proxy(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    plain = Settings(profile="production")
    (problem,) = tls_problems(plain)
    assert problem.startswith("HUB_HTTP_TLS_CERT / HUB_HTTP_TLS_KEY: not set")
    assert "HUB_HTTP_TLS_REQUIRED=false" in problem
    assert any(p.startswith("HUB_HTTP_TLS_CERT") for p in production_problems(plain))  # what hub run checks
    assert tls_problems(Settings(profile="production", http_tls_required=False)) == []
    server = pki.server()
    secure = Settings(profile="production", http_tls_cert=server.cert, http_tls_key=server.key)
    assert tls_problems(secure) == [] and secure.public_base_url.startswith("https://")
    with pytest.raises(ValidationError, match="go together"):
        Settings(http_tls_cert=server.cert)
    with pytest.raises(ValidationError, match="needs TLS"):
        Settings(http_tls_client_ca=pki.ca_file)


def test_hub_run_in_production_refuses_plain_http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    shutil.copytree(Path(__file__).resolve().parents[2] / "config", tmp_path / "config")
    env = {**os.environ, "HUB_CONFIG_DIR": str(tmp_path / "config"), "HUB_HOME": str(tmp_path / "home"),
           "HUB_PROFILE": "production", "HUB_KAFKA_URL": "kafka1:9092", "HUB_MONGO_URL": "mongodb://db1:27017/",
           "HUB_SFTP_ENABLED": "false"}
    hub = str(Path(sys.executable).parent / "hub")
    done = subprocess.run([hub, "run"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "HUB_HTTP_TLS_CERT / HUB_HTTP_TLS_KEY: not set" in done.stderr, done.stderr
    allowed = subprocess.run([hub, "run"], capture_output=True, text=True, timeout=60,
                             env={**env, "HUB_HTTP_TLS_REQUIRED": "false"})
    assert allowed.returncode == 2 and "HUB_HTTP_TLS" not in allowed.stderr  # refused for its dev- secrets only
