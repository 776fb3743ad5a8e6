"""Which fields are sensitive, judged by their *name* (CATALOGUE D.2.1: 客户姓名, 联系电话, 证件号, 地址信息,
用户密码, 银行账号, 支付账号, KI/OPC …), wherever they sit in a document.

Why by name and not by path: the canonical ``customer.*`` paths were the only ones masked, and the
probe (issue 17) found a construction manager's and a designer's phone in clear — they arrive as
partner callback results and user-stage fields (``phone``, ``designer_phone``,
``construction_manager_phone``) under paths nobody listed. A field's name says what it holds in
every spelling the documents use (``contactPhone``, ``CONTACT_PHONE``, ``联系电话``), so the name is
the classification; the partners' explicit ``sensitive_fields`` paths are added on top of it.

A name is split into lowercase words (``constructionManagerPhone`` → construction, manager, phone);
Chinese names are matched by the characters they contain. ``name`` alone is a person's name only
under a person (``customer.name``, ``designer.name``): a product's or a stage's ``name`` stays.
:func:`classify` returns the class, or ``None``; its answers are cached (a few hundred distinct keys).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["FieldClass", "classify", "depends_on_parent", "words"]

FieldClass = str
"""``person_name``, ``phone``, ``id_number``, ``address``, ``account`` or ``credential``."""

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\x00-\x7f]+")

#: words naming a person: a ``name`` next to or under one is that person's name
PERSON = frozenset({"customer", "cust", "contact", "linkman", "manager", "designer", "taker", "handler", "agent",
                    "applicant", "person", "real", "user", "owner", "legal", "recipient", "receiver", "consignee",
                    "subscriber", "full"})
#: a person role holding the person's name itself (``designer: 李工``, ``construction_manager: 王工``)
ROLES = frozenset({"manager", "designer", "taker", "contact", "linkman", "applicant", "recipient", "consignee"})
PHONE = frozenset({"phone", "mobile", "tel", "telephone", "cellphone", "fax"})
ID_NUMBERS = frozenset({"idnumber", "idno", "idnum", "idcard", "idcardno", "idcardnumber", "certno", "certnumber",
                        "certid", "certcode", "certificateno", "certificatenumber", "identitycard", "identityno",
                        "identitynumber", "passport", "passportno", "passportnumber", "psptid", "psptno",
                        "socialcreditcode"})
ACCOUNTS = frozenset({"bankaccount", "bankaccountno", "bankaccountnumber", "accountno", "accountnumber", "bankcard",
                      "bankcardno", "cardno", "cardnumber", "iban", "payaccount", "paymentaccount", "alipayaccount"})
CREDENTIALS = frozenset({"ki", "opc", "password", "passwd", "pwd", "secret", "token", "apikey", "authorization",
                         "privatekey"})
#: "address" words that name a network address, not a place
NOT_PLACES = frozenset({"ip", "mac", "email", "mail", "host", "server", "url", "web", "bind", "listen", "remote",
                        "local", "peer", "broker", "socket", "callback", "reply", "endpoint", "service", "public"})
#: the parts of an address object that say where someone lives (``addresses[0].detail``)
PLACE_PARTS = frozenset({"detail", "street", "line1", "line2", "room", "building"})
_SINGULARS = PHONE | ROLES | {"address", "name"}
#: Chinese spellings (the seeds' field labels), matched as substrings: first match wins
CHINESE: tuple[tuple[str, FieldClass], ...] = (
    ("密码", "credential"), ("证件", "id_number"), ("身份证", "id_number"), ("电话", "phone"), ("手机", "phone"),
    ("联系方式", "phone"), ("账号", "account"), ("帐号", "account"), ("地址", "address"), ("姓名", "person_name"),
    ("联系人", "person_name"), ("经办人", "person_name"), ("代办人", "person_name"), ("负责人", "person_name"),
    ("客户名称", "person_name"), ("处理人", "person_name"), ("接单人", "person_name"),
)


@lru_cache(maxsize=8192)
def words(key: str) -> tuple[str, ...]:
    """``constructionManagerPhone`` / ``CONSTRUCTION_MANAGER_PHONE`` → ``('construction', 'manager', 'phone')``."""
    return tuple(w.lower() for w in _WORD.findall(key))


@lru_cache(maxsize=8192)
def depends_on_parent(key: str) -> bool:
    """Whether :func:`classify` of ``key`` reads the parent (``name``, an address's ``detail``)."""
    ws = words(key)
    return ws in (("name",), ("names",)) or "".join(ws) in PLACE_PARTS


@lru_cache(maxsize=8192)
def classify(key: str, parent: str | None = None) -> FieldClass | None:
    """The class of the field ``key`` (inside an object held under ``parent``), or ``None``."""
    for chars, cls in CHINESE:
        if chars in key:
            return cls
    ws = words(key)
    if not ws:
        return None
    for plural in ("s", "es"):  # a list of them: contact_phones, managers, addresses
        stem = ws[-1][: -len(plural)]
        if ws[-1].endswith(plural) and stem in _SINGULARS:
            ws = (*ws[:-1], stem)
            break
    joined = "".join(ws)
    if joined in CREDENTIALS or ws[-1] in CREDENTIALS - {"ki", "opc", "token"}:
        return "credential"
    if joined in ID_NUMBERS or (len(ws) >= 2 and "".join(ws[-2:]) in ID_NUMBERS):
        return "id_number"
    if joined in ACCOUNTS or (len(ws) >= 2 and "".join(ws[-2:]) in ACCOUNTS):
        return "account"
    if PHONE.intersection(ws):
        return "phone"
    if ("address" in ws or "addr" in ws) and not NOT_PLACES.intersection(ws):
        return "address"
    pws = words(parent) if parent else ()
    if ws[-1] == "name" and (PERSON.intersection(ws[:-1]) or (len(ws) == 1 and PERSON.intersection(pws))):
        return "person_name"
    if ws[-1] in ROLES:
        return "person_name"
    if joined in PLACE_PARTS and ({"address", "addresses", "addr"}.intersection(pws) or "地址" in (parent or "")):
        return "address"
    return None
