"""The SOAP side of the crypto contract without servers: the ``via: soap_header`` carrier's rules, and
the in-place decryption of a request element whose declared field repeats (every address's detail,
written back to the right element in document order). Sealed with pycryptodome (independent)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA1, SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pss
from lxml import etree
from pydantic import ValidationError

from connectors.soap import xmlsafe
from connectors.soap.crypto import decrypt_request, header_elements
from hub.cryptocontract import Carrier, CryptoContract
from hub.errors import ValidationFailed

pytestmark = pytest.mark.unit
KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
CNS = "urn:partner:crypto"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


@pytest.mark.parametrize(("carry", "message"), [
    ({"via": "soap_header", "key": "X Encrypted"}, "is not an XML element name"),
    ({"via": "soap_header", "key": "ns:key"}, "is not an XML element name"),
    ({"via": "header", "namespace": CNS}, "namespace is only read with via: soap_header"),
])
def test_a_soap_header_carrier_needs_xml_names_and_namespace_needs_it(carry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Carrier.model_validate(carry)
    assert Carrier.model_validate({"via": "soap_header", "key": "encryptedKey", "namespace": CNS}).namespace == CNS


def _contract(fields: list[str]) -> CryptoContract:
    return CryptoContract.model_validate({
        "carry": {"via": "soap_header", "key": "encryptedKey", "key_id": "keyId", "namespace": CNS},
        "our_keys": [{"id": "hub-2026a", "file": str(KEYS / "test-hub-2026a.key.pem")}], "inbound_fields": fields})


def _seal(key: bytes, text: str) -> str:
    nonce = os.urandom(12)
    ct, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(text.encode())
    return base64.b64encode(nonce + ct + tag).decode()


def _request(key: bytes, details: list[str], other_ns: bool = False) -> etree._Element:
    wrapped = base64.b64encode(PKCS1_OAEP.new(RSA.import_key((KEYS / "test-hub-2026a.pub.pem").read_bytes()),
                                              hashAlgo=SHA256, mgfunc=lambda x, y: pss.MGF1(x, y, SHA1))
                               .encrypt(key)).decode()
    ns = "urn:elsewhere" if other_ns else CNS
    addresses = "".join(f"<o:address><o:city>C{n}</o:city><o:detail>{_seal(key, d)}</o:detail></o:address>"
                        for n, d in enumerate(details))
    return xmlsafe.parse((f'<s:Envelope xmlns:s="{SOAP}"><s:Header><c:encryptedKey xmlns:c="{ns}">{wrapped}'
                          f'</c:encryptedKey></s:Header><s:Body><o:receiveWorkOrder xmlns:o="urn:orders">'
                          f"<o:orderNo>S-1</o:orderNo>{addresses}</o:receiveWorkOrder></s:Body></s:Envelope>"
                          ).encode())


def test_every_repeated_field_is_decrypted_into_its_own_element() -> None:
    key = os.urandom(32)
    root = _request(key, ["文三路1号", "中山路8号", "解放路3号"])
    request = root.find(f"{{{SOAP}}}Body")[0]
    out = decrypt_request(_contract(["address.detail"]), request, root, {}, frozenset({"address"}))
    assert [a["detail"] for a in out.data["address"]] == ["文三路1号", "中山路8号", "解放路3号"]
    assert [e.text for e in request.iter("{urn:orders}detail")] == ["文三路1号", "中山路8号", "解放路3号"]
    assert sorted(out.xpaths.values()) == ["address.detail"] * 3 and len(out.xpaths) == 3
    assert out.session is not None and out.session.key == key


def test_a_key_in_another_namespace_is_not_the_carrier() -> None:
    root = _request(os.urandom(32), ["文三路1号"], other_ns=True)
    with pytest.raises(ValidationFailed, match="without the wrapped key"):
        decrypt_request(_contract(["address.detail"]), root.find(f"{{{SOAP}}}Body")[0], root, {}, frozenset())


def test_outbound_header_elements_are_written_in_the_carriers_namespace() -> None:
    (element,) = header_elements(_contract([]), {"encryptedKey": "abc="})
    assert element.tag == f"{{{CNS}}}encryptedKey" and element.text == "abc="
