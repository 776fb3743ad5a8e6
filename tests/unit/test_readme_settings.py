"""The README's variables table lists every ``HUB_*`` environment variable the hub reads, and
nothing else — so a newcomer can trust it, and a new setting cannot ship undocumented.

The variables come from three places, all scanned here rather than listed by hand:
* pydantic-settings models (``class …(BaseSettings)`` anywhere in the hub's packages);
* ``${HUB_…}`` references in the shipped ``config/`` files (secrets, partner URLs);
* literal ``os.environ`` / ``os.getenv`` look-ups in the hub's code.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "connectors", "flows", "routes", "transforms", "app", "simulators")
ENV_NAME = re.compile(r"HUB_[A-Z0-9_]*[A-Z0-9]")
CONFIG_REF = re.compile(r"\$\{(HUB_[A-Z0-9_]+)")
CODE_LOOKUP = re.compile(r"(?:environ\.get\(|environ\[|getenv\()\s*[\"'](HUB_[A-Z0-9_]+)[\"']")


def _python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _settings_modules() -> list[str]:
    """Modules that define a BaseSettings subclass (found by parsing, imported afterwards)."""
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Name) and b.id == "BaseSettings")
                or (isinstance(b, ast.Attribute) and b.attr == "BaseSettings")
                for b in node.bases
            ):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
                break
    return found


def settings_env_names() -> dict[str, str]:
    """Env name → where it is defined, for every field of every settings model."""
    names: dict[str, str] = {}
    for module_name in _settings_modules():
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not issubclass(cls, BaseSettings) or cls is BaseSettings or cls.__module__ != module_name:
                continue
            prefix = cls.model_config.get("env_prefix", "")
            for field_name, field in cls.model_fields.items():
                alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
                env = (alias or f"{prefix}{field_name}").upper()
                names[env] = f"{module_name}.{cls.__name__}.{field_name}"
    return names


def config_env_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for path in sorted((ROOT / "config").rglob("*")):
        if path.suffix in {".yaml", ".yml"}:
            for env in CONFIG_REF.findall(path.read_text(encoding="utf-8")):
                names.setdefault(env, str(path.relative_to(ROOT)))
    return names


def code_env_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for path in _python_files():
        for env in CODE_LOOKUP.findall(path.read_text(encoding="utf-8")):
            names.setdefault(env, str(path.relative_to(ROOT)))
    return names


def readme_table_names() -> set[str]:
    """``HUB_*`` names in the first column of the table(s) under the README's Configuration heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            names.update(ENV_NAME.findall(first))
    return names


def test_every_hub_variable_is_in_the_readme_table() -> None:
    expected = {**code_env_names(), **config_env_names(), **settings_env_names()}
    documented = readme_table_names()
    missing = {env: where for env, where in expected.items() if env not in documented}
    assert not missing, f"README.md Configuration table lacks (variable: defined in): {missing}"


def test_readme_table_lists_no_variable_the_hub_does_not_read() -> None:
    expected = {**code_env_names(), **config_env_names(), **settings_env_names()}
    stale = readme_table_names() - set(expected)
    assert not stale, f"README.md Configuration table lists variables nothing reads: {sorted(stale)}"


def test_the_scan_finds_each_kind_of_source() -> None:
    """Guards the scanner itself: if a regex or the model discovery broke, the tests above would
    pass vacuously."""
    assert {"HUB_HOME", "HUB_KAFKA_URL"} <= set(settings_env_names())
    assert "HUB_FLOW_LEASE_S" in settings_env_names()
    assert "HUB_AMQP_URL" in settings_env_names()
    assert {"HUB_SIM_URL", "HUB_ESOP_API_KEY"} <= set(config_env_names())
    assert {"HUB_TANSU_BIN", "HUB_SFTP_ROOT"} <= set(code_env_names())
    assert "HUB_HOME" in readme_table_names()
