"""docs/deploy.md names only what exists: every ``HUB_*`` variable in it is one the hub's settings
models read (or a ``${VAR}`` of the shipped configuration, the partner secrets), every
``config/deploy/…`` file it names is there, and every relative link reaches a file and heading.

Why: a deployment guide is followed to the letter; a variable it invents is silently ignored by
pydantic-settings (``extra="ignore"``) and the operator believes a setting is in force that is not.
"""

from __future__ import annotations

import re
from pathlib import Path

from hub.settings import PROJECT_ROOT
from tests.unit.test_readme_settings import ENV_NAME, config_env_names, settings_env_names

GUIDE = PROJECT_ROOT / "docs" / "deploy.md"
DEPLOY_FILE = re.compile(r"config/deploy/[A-Za-z0-9_.@-]*[A-Za-z0-9_@-]")
PREFIX = re.compile(r"(HUB_[A-Z0-9_]*[A-Z0-9])_\*")  # `HUB_FLOW_*`: a family of settings
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a ``#`` line inside a fenced block is not one)."""
    out, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            out.add(slug(line.lstrip("#")))
    return out


def test_every_hub_variable_the_guide_names_is_read_by_the_settings_models() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    prefixes = set(PREFIX.findall(text))
    named = set(ENV_NAME.findall(PREFIX.sub("", text)))
    assert {"HUB_KAFKA_REPLICATION_FACTOR", "HUB_KAFKA_MIN_INSYNC_REPLICAS", "HUB_KAFKA_IDEMPOTENT",
            "HUB_TOPIC_PARTITIONS", "HUB_MONGO_URL_FILE"} <= named
    settings, config = settings_env_names(), config_env_names()
    unknown = sorted(n for n in named if n not in settings and n not in config
                     and not (n.endswith("_FILE") and (n.removesuffix("_FILE") in settings
                                                       or n.removesuffix("_FILE") in config)))
    assert not unknown, f"docs/deploy.md names variables no settings model reads: {unknown}"
    empty = sorted(p for p in prefixes if not any(n.startswith(p + "_") for n in settings))
    assert not empty, f"docs/deploy.md names families of settings that have none: {empty}"


def test_every_config_deploy_file_the_guide_names_exists() -> None:
    named = set(DEPLOY_FILE.findall(GUIDE.read_text(encoding="utf-8")))
    assert {"config/deploy/hub@.service", "config/deploy/kafka-topics.yaml",
            "config/deploy/production.env.example"} <= named
    missing = sorted(n for n in named if not (PROJECT_ROOT / n).is_file())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"


def test_every_relative_link_of_the_guide_reaches_its_file_and_heading() -> None:
    broken = []
    for target, anchor in LINK.findall(GUIDE.read_text(encoding="utf-8")):
        path = (GUIDE.parent / target).resolve()
        if not path.is_file():
            broken.append(target)
        elif anchor and anchor not in anchors(path):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"docs/deploy.md links to nothing: {broken}"


def test_the_slug_matches_githubs_for_the_headings_linked() -> None:
    assert slug("TLS and client certificates (issue 17 §4–5)") == "tls-and-client-certificates-issue-17-45"
    assert slug("Throughput (`python -m bench.flow`)") == "throughput-python--m-benchflow"
