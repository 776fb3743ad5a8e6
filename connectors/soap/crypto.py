"""The partner's crypto contract on SOAP messages: where the key travels, and the request element's
declared fields decrypted in place before the XSD sees them.

Why in place, on the XML: the XSD validates the request element, and an encrypted value is base64
text — a field typed ``xsd:positiveInteger`` or restricted by a pattern would fail validation
while still encrypted. So the request element is turned into the partner's dict (paths are the
partner's element names, as ``xmlsafe.to_dict`` names them), decrypted by the one pure API
(``transforms.crypto.decrypt_inbound``), and the clear texts are written back into the element
that is then validated. The XSD's error messages quote values; for a decrypted element the message
is replaced, so a sensitive value never reaches a fault or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from connectors.soap import xmlsafe
from hub import paths
from hub.cryptocontract import CryptoContract
from hub.errors import ValidationFailed
from transforms.crypto import Session, decrypt_inbound

__all__ = ["Decrypted", "carried", "decrypt_request", "header_elements", "redact_errors"]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


@dataclass
class Decrypted:
    """The request as the partner's dict with its declared fields in clear, the session (its key,
    for an answer), and the XPaths of the elements that were decrypted (their XSD errors are redacted)."""

    data: dict[str, Any]
    session: Session | None
    xpaths: dict[str, str] = field(default_factory=dict)  # XPath of a decrypted element → its dotted path


def carried(contract: CryptoContract, root: etree._Element | None, http_headers: Mapping[str, str]
            ) -> Mapping[str, str]:
    """What travelled beside the body: the HTTP headers (``via: header``), or the SOAP header
    elements by local name (``via: soap_header``; only in ``carry.namespace`` when it is set)."""
    if contract.carry.via != "soap_header":
        return http_headers
    header = root.find(f"{{{SOAP_ENV}}}Header") if root is not None else None
    if header is None:
        return {}
    out: dict[str, str] = {}
    wanted = {contract.carry.key, contract.carry.iv, contract.carry.key_id} - {None}
    for child in header:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child.tag)
        if qname.localname in wanted and contract.carry.namespace in (None, qname.namespace):
            out.setdefault(qname.localname, (child.text or "").strip())
    return out


def _leaves(element: etree._Element, path: str) -> list[etree._Element]:
    """The elements at a dotted path in the order ``paths.targets`` visits the same path in
    ``xmlsafe.to_dict(element)``: children by local name in document order, repeated ones fanned
    out, a digit segment picking one of them."""
    nodes = [element]
    for part in paths.split(path):
        found: list[etree._Element] = []
        for node in nodes:
            if part.isdigit():
                found.append(node)
                continue
            found.extend(c for c in node if isinstance(c.tag, str) and xmlsafe.local(c.tag) == part)
        if part.isdigit():
            index = int(part)
            found = [found[index]] if index < len(found) else []
        nodes = found
    return [n for n in nodes if len(n) == 0]


def decrypt_request(contract: CryptoContract, request: etree._Element, root: etree._Element | None,
                    http_headers: Mapping[str, str], lists: frozenset[str]) -> Decrypted:
    """Decrypt ``contract.inbound_fields`` of the request element *in place* and return the clear
    dict (the carrier fields of ``via: field`` removed). ValidationFailed names the field, never
    its value (``decrypt_inbound``)."""
    data = xmlsafe.to_dict(request, lists)
    clear, session = decrypt_inbound(contract, data, carried(contract, root, http_headers))
    out = Decrypted(clear, session)
    if session is None:
        return out
    tree = request.getroottree()
    for path in contract.inbound_fields:
        # targets pairs a list with an int key and a dict with a str key; its union type cannot say so
        values = [holder[key] for holder, key in paths.targets(clear, path)]  # type: ignore[index]  # see above
        elements = _leaves(request, path)
        if len(values) != len(elements):  # a path that reaches an element with children: nothing was decrypted
            raise ValidationFailed(f"{path} is not a text element", [
                {"field": path, "message": "an encrypted field must be a text element", "type": "crypto_encoding"}])
        for element, value in zip(elements, values, strict=True):
            if value is None:
                continue
            element.text = value if isinstance(value, str) else str(value)
            out.xpaths[tree.getpath(element)] = path
    return out


def redact_errors(errors: list[dict[str, Any]], log: Any, xpaths: Mapping[str, str]) -> list[dict[str, Any]]:
    """The XSD errors with the message of each decrypted element replaced (lxml quotes the value)."""
    for error, entry in zip(errors, log, strict=False):
        path = xpaths.get(getattr(entry, "path", None) or "")
        if path is not None:
            error["message"] = f"{path}: invalid value (an encrypted field: its value is not shown)"
    return errors


def header_elements(contract: CryptoContract, values: Mapping[str, str]) -> list[etree._Element]:
    """The carried values as SOAP header elements (``via: soap_header``, outbound): one element per
    value, in ``carry.namespace`` when set; zeep appends them to the request's ``soap:Header``."""
    ns = contract.carry.namespace
    out = []
    for name, value in values.items():
        element = etree.Element(f"{{{ns}}}{name}" if ns else name, nsmap={"hc": ns} if ns else None)
        element.text = value
        out.append(element)
    return out
