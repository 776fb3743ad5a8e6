"""docs/architecture.md walks a reader through the code file by file: every file or folder it names
must exist, and the layers it draws must be the ones import-linter checks (pyproject.toml) — so a
moved module or a changed contract shows up as a failing test, not as a stale document."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
# `connectors/rest/source.py`, `connectors/delivery/` (`chain.py`, …), `config/flows/x.yaml`
PATH = re.compile(r"`((?:app|hub|connectors|routes|flows|transforms|simulators|bench|tests|config|docs)/[\w./<>-]*)")


def named_paths(text: str) -> list[str]:
    return sorted({p.rstrip(".") for p in PATH.findall(text) if "<" not in p})


def test_every_file_the_architecture_doc_names_exists() -> None:
    names = named_paths(DOC.read_text(encoding="utf-8"))
    assert len(names) > 30  # the order's path alone names more files than that
    assert [n for n in names if not (ROOT / n).exists()] == []


def test_the_doc_draws_the_layers_import_linter_checks() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    text = DOC.read_text(encoding="utf-8")
    drawn = " > ".join(f"`{layer}`" for layer in layers).replace("|", "\\|")  # as a Markdown table cell
    assert drawn in text, drawn


def test_the_readme_links_the_architecture_doc() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")
