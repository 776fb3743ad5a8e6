"""Unit tests: hub/masking.py, the one masking mechanism (admin listings, dry runs, audit trail)."""

from __future__ import annotations

from typing import Any

import pytest

from app.admin.queries import masker
from hub.masking import SECRET_KEYS, Masker, hint, mask, redact
from hub.partners import Partner


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Zhang San", "Z*******n"),
        ("13800001111", "1********1"),  # at most 8 stars, whatever the length
        ("ab", "**"),
        ("a", "*"),
        ("", ""),
        (12345, "1***5"),  # numbers become text
        (None, None),  # absence stays visible
        ("Z*******n", "Z*******n"),  # masking twice changes nothing
    ],
)
def test_hint_keeps_first_and_last_character(value: Any, expected: Any) -> None:
    assert hint(value) == expected


@pytest.mark.parametrize(
    ("doc", "paths", "expected"),
    [
        # a path applies at every object: the order may sit under payload, order, request …
        ({"customer": {"name": "Zhang San"}}, ["customer.name"], {"customer": {"name": "Z*******n"}}),
        ({"payload": {"order": {"customer": {"name": "Li Si"}}}}, ["customer.name"],
         {"payload": {"order": {"customer": {"name": "L***i"}}}}),
        # lists on the way are walked; non-sensitive siblings stay
        ({"addresses": [{"detail": "1 Wensan", "city": "HZ"}, {"detail": "22", "city": "BJ"}]}, ["addresses.detail"],
         {"addresses": [{"detail": "1******n", "city": "HZ"}, {"detail": "**", "city": "BJ"}]}),
        # a list or object at a sensitive path is masked whole (classifying `customer` hides all of it)
        ({"tags": ["alpha", "beta"]}, ["tags"], {"tags": ["a***a", "b**a"]}),
        ({"customer": {"name": "Zhang", "ids": ["110101"]}}, ["customer"],
         {"customer": {"name": "Z***g", "ids": ["1****1"]}}),
        # a digit segment picks one item only
        ({"lines": ["first", "second"]}, ["lines.1"], {"lines": ["first", "s****d"]}),
        # secret keys are redacted anywhere, whatever the paths, case-insensitively
        ({"auth": {"Password": "hunter2", "user": "bob"}}, [], {"auth": {"Password": "***", "user": "bob"}}),
        ({"x": [{"api_key": 42}]}, [], {"x": [{"api_key": "***"}]}),
        # a secret key holding an object is walked, not replaced by text
        ({"token": {"value": "t"}}, [], {"token": {"value": "t"}}),
        # absent paths change nothing; None stays None
        ({"customer": {"phone": None}}, ["customer.phone", "nope.x"], {"customer": {"phone": None}}),
    ],
)
def test_mask_table(doc: dict[str, Any], paths: list[str], expected: dict[str, Any]) -> None:
    before = repr(doc)
    assert mask(doc, paths) == expected
    assert repr(doc) == before  # the input is never modified


def test_a_classification_maps_field_names_to_rules() -> None:
    """The extension point (issue 17): each classified field has its own rule; keys can be replaced."""
    m = Masker(fields={"customer.name": hint, "customer.id_number": redact, "customer.phone": lambda v: v[-4:]},
               keys={"pin": redact}, classify=None)  # no classification by name: only these rules
    out = m({"customer": {"name": "Zhang San", "id_number": "110101199001011234", "phone": "13800001111"},
             "card": {"PIN": "1234", "password": "kept: not a key of this classification"}})
    assert out == {"customer": {"name": "Z*******n", "id_number": "***", "phone": "1111"},
                   "card": {"PIN": "***", "password": "kept: not a key of this classification"}}
    assert set(SECRET_KEYS) >= {"password", "token", "authorization"}
    assert Masker.of(["a"]).fields == {"a": hint}


def test_masking_does_not_recurse_on_deep_documents() -> None:
    deep: Any = {"customer": {"name": "Alice"}, "token": "t"}
    for _ in range(5_000):
        deep = {"n": [deep]}
    out = masker({})(deep)
    for _ in range(5_000):
        out = out["n"][0]
    assert out == {"customer": {"name": "A***e"}, "token": "***"}


def test_listing_masker_unions_every_partners_paths_with_the_defaults() -> None:
    m = masker({"bank": Partner(name="bank", sensitive_fields=["account.number"])})
    assert set(m.fields) >= {"account.number", "customer.name", "customer.contact_phone", "addresses.detail"}
    out = m({"account": {"number": "6222020200112233"}, "customer": {"contact_phone": "13800001111"}})
    assert out == {"account": {"number": "6********3"}, "customer": {"contact_phone": "1********1"}}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # issue 17 probe: phones outside customer.* (a construction callback, a 5G user stage's form)
        ({"construction": {"manager": "王工程", "phone": "13800000000", "status": "completed"}},
         {"construction": {"manager": "王*程", "phone": "1********0", "status": "completed"}}),
        ({"data": {"designer": "Li Gong", "designer_phone": "13911112222", "construction_manager_phone": "139333",
                   "investment": 12.5}},
         {"data": {"designer": "L*****g", "designer_phone": "1********2", "construction_manager_phone": "1****3",
                   "investment": 12.5}}),
        # the documents' spellings: camelCase, upper snake, Chinese labels
        ({"customer": {"contactPhone": "13800001111"}, "CONTACT_PHONE": "13800002222", "联系电话": "13800003333",
          "idCard": "110101199001011234", "PSPT_ID": "110101199001015678", "证件号码": "X1234567"},
         {"customer": {"contactPhone": "1********1"}, "CONTACT_PHONE": "1********2", "联系电话": "1********3",
          "idCard": "1********4", "PSPT_ID": "1********8", "证件号码": "X******7"}),
        # `name` is a person's under a person only; a product's or a stage's name stays
        ({"customer": {"name": "Zhang San"}, "product": {"name": "internet_line"}, "stage_name": "design",
          "contact": {"name": "Wang Wu", "mobile": "13800004444"}, "customer_name": "Li Si"},
         {"customer": {"name": "Z*******n"}, "product": {"name": "internet_line"}, "stage_name": "design",
          "contact": {"name": "W*****u", "mobile": "1********4"}, "customer_name": "L***i"}),
        # addresses at any index; a network address is not a place; accounts; credentials redacted
        ({"addresses": [{"detail": "文一西路 1 号", "city": "杭州"}], "install_address": "文二路 9 号",
          "ip_address": "10.0.0.1", "bank_account": "6222020200112233", "user_password": "hunter2", "KI": "00ff"},
         {"addresses": [{"detail": "文******号", "city": "杭州"}], "install_address": "文*****号",
          "ip_address": "10.0.0.1", "bank_account": "6********3", "user_password": "***", "KI": "***"}),
        # a list under a classified key: its scalars; plural names; a URL "address" is no place
        ({"contact_phones": ["13800005555", "13800006666"], "managers": ["Zhao Liu"], "addresses": ["文三路 8 号"],
          "callback_address": "http://127.0.0.1:9/cb", "order_ids": ["ord-1"]},
         {"contact_phones": ["1********5", "1********6"], "managers": ["Z******u"], "addresses": ["文*****号"],
          "callback_address": "http://127.0.0.1:9/cb", "order_ids": ["ord-1"]}),
        # None and booleans say nothing and stay
        ({"phone": None, "is_mobile": True}, {"phone": None, "is_mobile": True}),
    ],
)
def test_fields_are_masked_by_their_classified_name_wherever_they_sit(doc: dict[str, Any],
                                                                     expected: dict[str, Any]) -> None:
    before = repr(doc)
    assert Masker()(doc) == expected
    assert masker({})(doc) == expected  # the listings' masker classifies too
    assert repr(doc) == before


def test_an_explicit_path_rule_wins_over_the_classification() -> None:
    m = Masker(fields={"customer.phone": lambda v: v[-4:]})
    assert m({"customer": {"phone": "13800001111"}, "phone": "13800002222"}) == {
        "customer": {"phone": "1111"}, "phone": "1********2"}


@pytest.mark.parametrize(
    ("pointer", "value", "expected"),
    [
        # array-indexed patch paths (the replay history stored these in clear)
        ("/payload/addresses/0/detail", "文一西路 1 号", "文******号"),
        ("/payload/order/customer/contact_phone", "13800001111", "1********1"),
        ("/payload/data/designer_phone", "13911112222", "1********2"),
        ("/payload/addresses/-", {"city": "杭州", "detail": "文二路"}, {"city": "杭州", "detail": "文*路"}),
        ("/payload/customer", {"name": "Zhang San", "id_number": "110101"},
         {"name": "Z*******n", "id_number": "1****1"}),
        ("/payload/bandwidth_mbps", 200, 200),
        ("/payload/lines/1", "kept", "kept"),
    ],
)
def test_a_value_is_masked_by_the_path_it_is_written_at(pointer: str, value: Any, expected: Any) -> None:
    assert masker({}).at(pointer.split("/"), value) == expected
