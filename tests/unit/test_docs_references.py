"""Every document the README and docs/ point a reader to is in the repository (docs/operations.md
used to send newcomers to an ``INFRA.md`` that only existed outside it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# a Markdown file named in a link target or in backticks/plain text: docs/flows.md, INFRA.md, …
MD_REF = re.compile(r"(?<![\w/.-])((?:\.\./|\./)?[\w./-]*[\w-]\.md)\b")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def missing_references(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    missing = []
    for ref in sorted(set(MD_REF.findall(text))):
        if ref.startswith(("http", "www.")):
            continue
        if not ((doc.parent / ref).is_file() or (ROOT / ref).is_file()):
            missing.append(ref)
    return missing


def test_documents_point_only_to_documents_in_the_repository() -> None:
    problems = {str(d.relative_to(ROOT)): refs for d in documents() if (refs := missing_references(d))}
    assert not problems, f"references to Markdown files that are not in the repository: {problems}"


def test_the_scan_sees_references() -> None:
    assert "docs/connectors.md" in MD_REF.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert MD_REF.findall("(see INFRA.md), so") == ["INFRA.md"]
