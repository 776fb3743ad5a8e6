"""Properties of the SOAP parser (connectors/soap/xmlsafe.py) over generated input: whatever the
bytes, it returns a tree or raises our ValidationFailed (UnsafeXml, TooDeep) — never lxml's or
Python's own errors — and a document that declares or references entities is refused, in any
encoding and wherever the DTD sits, so no expansion ever reaches a handler."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from connectors.soap import xmlsafe
from hub.errors import ValidationFailed
from hub.jsonlimits import TooDeep
from tests.fuzz.budget import budget

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

MARKER = "EXPANDED-7f3a"
NAMES = st.from_regex(r"\A[a-z][a-z0-9]{0,6}\Z")
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=20)
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-16-be", "iso-8859-1", "gb18030"])


@st.composite
def trees(draw: Any, max_depth: int = 6) -> etree._Element:
    """A random element tree (names, texts, nesting up to ``max_depth``)."""
    root = etree.Element(draw(NAMES))
    frontier = [(root, 1)]
    for _ in range(draw(st.integers(0, 12))):
        parent, depth = draw(st.sampled_from(frontier))
        if depth >= max_depth:
            continue
        child = etree.SubElement(parent, draw(NAMES))
        child.text = draw(TEXT)
        frontier.append((child, depth + 1))
    return root


def _serialise(root: etree._Element, encoding: str) -> bytes:
    body = etree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="{encoding}"?>\n{body}'.encode(encoding, "xmlcharrefreplace")


@budget(300)
@given(st.binary(max_size=2048))
def test_any_bytes_are_a_tree_or_our_error(body: bytes) -> None:
    try:
        xmlsafe.parse(body)
    except ValidationFailed:
        pass


@budget(150)
@given(trees(), ENCODINGS)
def test_a_plain_document_parses_in_any_declared_encoding(root: etree._Element, encoding: str) -> None:
    try:
        body = _serialise(root, encoding)
    except UnicodeEncodeError:  # a name this codec cannot spell (lxml names are ASCII here: never)
        return
    parsed = xmlsafe.parse(body)
    assert [(e.tag, e.text or "") for e in parsed.iter()] == [(e.tag, e.text or "") for e in root.iter()]


@st.composite
def entity_documents(draw: Any) -> tuple[bytes, str]:
    """A document with a DTD declaring entities and references to them: internal, external (a local
    file and a URL), parameter entities, nested (billion laughs); the DTD after padding of any
    length (comments, whitespace, processing instructions), in any encoding."""
    kind = draw(st.sampled_from(["internal", "file", "url", "parameter", "laughs"]))
    decl = {
        "internal": f'<!ENTITY e "{MARKER}">',
        "file": '<!ENTITY e SYSTEM "file:///etc/hostname">',
        "url": '<!ENTITY e SYSTEM "http://127.0.0.1:9/x">',
        "parameter": f'<!ENTITY % p "<!ENTITY e \'{MARKER}\'>"> %p;',
        "laughs": f'<!ENTITY a "{MARKER}"><!ENTITY b "&a;&a;&a;&a;"><!ENTITY e "&b;&b;&b;&b;">',
    }[kind]
    padding = draw(st.sampled_from(["", " " * 5000, "<!--" + "x" * 5000 + "-->", "<?pi data?>\n" * 500]))
    doctype = draw(st.sampled_from(["DOCTYPE", "doctype", "DocType"]))
    root = draw(NAMES)
    body = f'<?xml version="1.0" encoding="{{enc}}"?>{padding}<!{doctype} {root} [{decl}]><{root}>&e;</{root}>'
    encoding = draw(ENCODINGS)
    return body.replace("{enc}", encoding).encode(encoding), kind


@budget(150)
@given(entity_documents())
def test_a_document_with_entities_is_refused_and_never_expanded(document: tuple[bytes, str]) -> None:
    body, kind = document
    try:
        root = xmlsafe.parse(body)
    except ValidationFailed:
        return
    # not refused: it must at least not carry the expansion (this line failing names the gap)
    text = etree.tostring(root, encoding="unicode")
    assert MARKER not in text, (kind, text[:200])
    pytest.fail(f"a {kind} entity document was accepted: {text[:200]}")


@budget(100)
@given(st.integers(1, 120), st.integers(8, 80))
def test_nesting_past_the_limit_is_too_deep_and_within_it_parses(depth: int, limit: int) -> None:
    body = "".join(f"<n{i}>" for i in range(depth)) + "".join(f"</n{i}>" for i in reversed(range(depth)))
    if depth > limit:
        with pytest.raises(TooDeep):
            xmlsafe.parse(body.encode(), limit)
    else:
        assert xmlsafe.parse(body.encode(), limit) is not None
