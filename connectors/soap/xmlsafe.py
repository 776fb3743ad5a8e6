"""Safe XML for partner input: no DTDs, no entities, no network, bounded size.

lxml's defaults resolve internal entities (billion laughs) and load DTDs; a partner's request is
parsed with everything off, and any ``<!DOCTYPE`` is refused outright — SOAP 1.1 forbids a DTD
in a message anyway (SOAP 1.1 §3), so refusing one never rejects a legitimate request.

Nesting is bounded too (``HUB_INTAKE_MAX_DEPTH``, default 64 elements from the root): libxml2
stops at 256 on its own, and the dict conversion and the stored order must stay far below that.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from hub.errors import ValidationFailed
from hub.jsonlimits import DEFAULT_MAX_DEPTH, TooDeep


class UnsafeXml(ValidationFailed):
    """The request tried a DTD, an entity, or something else a SOAP message may not carry."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_comments=True, remove_pis=True,
    )


def _depth_exceeds(root: etree._Element, limit: int) -> bool:
    """Element nesting over ``limit``, walked without recursion (lxml's iterwalk is C-level)."""
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> etree._Element:
    """Parse one request; raise UnsafeXml for DTD/entities, TooDeep past ``max_depth`` nested
    elements, ValidationFailed for malformed XML."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        raise UnsafeXml("DTDs and entity declarations are not allowed in a SOAP message")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        if "Excessive depth" in str(exc):  # libxml2's own hard stop (256), far past ours
            raise TooDeep(max_depth, "XML request") from exc
        raise ValidationFailed(f"malformed XML: {exc}") from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXml("DTDs are not allowed in a SOAP message")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise UnsafeXml("entity references are not allowed in a SOAP message")
    if _depth_exceeds(root, max_depth):
        raise TooDeep(max_depth, "XML request")
    return root


def local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def to_dict(element: etree._Element, list_elements: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Element → dict by local names; repeated or ``list_elements`` children become lists."""
    out: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = local(child.tag)
        value: Any = to_dict(child, list_elements) if len(child) else (child.text or "").strip()
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = [value] if name in list_elements else value
    return out
