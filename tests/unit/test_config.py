"""Configuration errors must name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.configfile import load_model
from hub.errors import ConfigError
from hub.order import idempotency_key, order_id_for
from hub.partners import Partner, load_partners
from hub.settings import load_settings
from hub.topics import dead_letter, inbound, orders, outbound, source_of_dead_letter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HUB_* variables from the shell or from a test session's embedded servers."""
    import os

    for name in [n for n in os.environ if n.startswith("HUB_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_shipped_partner_files_are_valid() -> None:
    partners = load_partners(ROOT / "config")
    assert {"esop", "group"} <= set(partners)
    assert partners["esop"].inbound is not None and partners["esop"].inbound.rest is not None


def test_partner_error_names_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "esop.yaml"
    bad.write_text("name: esop\ninbound:\n  rest:\n    auth:\n      header: X-Api-Key\n      keys: [short]\n")
    with pytest.raises(ConfigError) as info:
        load_model(bad, Partner)
    (problem,) = info.value.problems
    assert problem.startswith(f"{bad}:6: inbound.rest.auth.keys")
    assert "at least 8 characters" in problem


def test_unknown_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p1\ndisplay_name: x\nflavour: mint\n")
    with pytest.raises(ConfigError) as info:
        load_model(bad, Partner)
    assert any(p.startswith(f"{bad}:3: flavour") for p in info.value.problems)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p1\ninbound: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_model(bad, Partner)
    assert str(bad) in info.value.problems[0]


def test_env_references_expand_and_missing_ones_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("name: p1\ndisplay_name: ${P1_NAME}\n")
    with pytest.raises(ConfigError, match="P1_NAME"):
        load_model(f, Partner)
    monkeypatch.setenv("P1_NAME", "Partner One")
    assert load_model(f, Partner).display_name == "Partner One"


def test_file_name_must_match_partner_name(tmp_path: Path) -> None:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "alpha.yaml").write_text("name: beta\n")
    with pytest.raises(ConfigError, match="does not match the file name"):
        load_partners(tmp_path)


def test_settings_errors_name_env_var_and_yaml_line(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    monkeypatch = clean_env
    monkeypatch.setenv("HUB_HTTP_PORT", "eighty")
    with pytest.raises(ConfigError, match="HUB_HTTP_PORT='eighty'"):
        load_settings()
    monkeypatch.delenv("HUB_HTTP_PORT")
    (tmp_path / "hub.yaml").write_text("http_host: 127.0.0.1\ntopic_partitions: 0\n")
    monkeypatch.setenv("HUB_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems[0].startswith(f"{tmp_path / 'hub.yaml'}:2: topic_partitions")


def test_env_overrides_yaml(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    monkeypatch = clean_env
    (tmp_path / "hub.yaml").write_text("http_port: 9001\nkafka_port: 9002\n")
    monkeypatch.setenv("HUB_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("HUB_HTTP_PORT", "9100")
    s = load_settings()
    assert (s.http_port, s.kafka_port) == (9100, 9002)
    assert s.kafka_bootstrap == "127.0.0.1:9002" and s.kafka_embedded
    monkeypatch.setenv("HUB_KAFKA_URL", "k1:9092,k2:9092")
    assert load_settings().kafka_bootstrap == "k1:9092,k2:9092"
    assert not load_settings().kafka_embedded


def test_hub_yaml_is_read_by_pydantic_settings_yaml_source_with_our_reader(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """The YAML settings source is pydantic-settings' own; the file is read by hub.configfile:
    ``${VAR}`` expands, and every error names the file and the line."""
    from pydantic_settings import YamlConfigSettingsSource

    from hub.settings import _YamlSource

    monkeypatch = clean_env
    monkeypatch.setenv("HUB_CONFIG_DIR", str(tmp_path))
    assert issubclass(_YamlSource, YamlConfigSettingsSource)
    (tmp_path / "hub.yaml").write_text("# settings\nmongo_db: ${H2B_DB:-fallback}\nnot_a_setting: 1\n")
    assert load_settings().mongo_db == "fallback"  # unknown keys are ignored, as in the environment
    monkeypatch.setenv("H2B_DB", "from_env")
    assert load_settings().mongo_db == "from_env"
    (tmp_path / "hub.yaml").write_text("\n- just\n- a list\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems == [f"{tmp_path / 'hub.yaml'}:2: (document): settings must be a mapping of keys"]
    (tmp_path / "hub.yaml").write_text("http_port: 1\nhttp_host: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems[0].startswith(f"{tmp_path / 'hub.yaml'}:")
    (tmp_path / "hub.yaml").write_text("")  # an empty file is no settings, not an error
    assert load_settings().mongo_db == "hub"


def test_topic_scheme() -> None:
    assert inbound("hub", "esop") == "hub.in.esop"
    assert orders("hub") == "hub.orders"
    assert outbound("hub", "group") == "hub.out.group"
    assert dead_letter("hub.out.group") == "hub.out.group.dlq"
    assert source_of_dead_letter("hub.out.group.dlq") == "hub.out.group"
    with pytest.raises(ValueError):
        inbound("hub", "../etc")


def test_order_identity_is_deterministic_per_partner_external_id_and_scenario() -> None:
    a = order_id_for("esop", "E1", "open")
    assert a == order_id_for("esop", "E1", "open")
    assert a != order_id_for("esop", "E1", "change") != order_id_for("group", "E1", "open")
    assert idempotency_key("esop", "E1", "open") == "order:esop:E1:open"
