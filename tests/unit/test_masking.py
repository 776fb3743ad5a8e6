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
               keys={"pin": redact})
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
