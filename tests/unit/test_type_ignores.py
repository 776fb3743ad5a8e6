"""Every ``# type: ignore`` in the product's code names its error code and says why on the same line
(issue "House layout" §6): an ignore without a reason is how 46 of them piled up unexamined."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "transforms", "connectors", "routes", "flows", "app", "simulators")
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<code>\[[^\]]+\])?(?P<rest>.*)$")


def unexplained(line: str) -> bool:
    """True for an ignore without an error code, or without a ``# reason`` after it."""
    m = IGNORE.search(line)
    return m is not None and (m["code"] is None or not re.match(r"\s+#\s*\S", m["rest"]))


def test_unexplained_ignores_are_recognised() -> None:
    assert unexplained("x = f()  # type: ignore")
    assert unexplained("x = f()  # type: ignore[arg-type]")
    assert not unexplained("x = f()  # type: ignore[arg-type]  # faust's stubs reject any async def")
    assert not unexplained("x = f()  # an ordinary comment")


def test_every_type_ignore_in_the_product_says_why() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if unexplained(line)]
    assert found == []
