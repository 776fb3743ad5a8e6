"""Issue 8 item 1 without servers: nothing on the intake path recurses on partner nesting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors.sftp.records import FileRejected, iter_records
from connectors.soap import xmlsafe
from hub.jsonlimits import TooDeep, json_depth_exceeds, loads, value_depth
from hub.masking import mask
from hub.paths import copy_json
from tests.unit.test_sftp_records import cfg
from transforms.mapping import apply_mapping


def deep_list(depth: int) -> list:
    root: list = []
    cur = root
    for _ in range(depth - 1):
        cur.append([])
        cur = cur[0]
    return root


def test_half_a_million_levels_is_refused_in_milliseconds() -> None:
    body = b"[" * 500_000 + b"]" * 500_000
    started = time.process_time()  # this process's CPU, not the wall: a loaded CI machine stalls the wall
    with pytest.raises(TooDeep, match="limit of 64 levels"):
        loads(body)
    assert time.process_time() - started < 0.5  # generous: the scan stops at level 65


def test_depth_counts_only_brackets_outside_strings() -> None:
    assert not json_depth_exceeds(b'{"a": "[[[[{{{{", "b": "\\"[[["}', 1)
    assert json_depth_exceeds(b'{"a": {"b": 1}}', 1)
    assert loads('{"a": [1, {"b": "]]]"}]}', 3) == {"a": [1, {"b": "]]]"}]}


def test_mapping_and_masking_copy_deep_values_without_recursion() -> None:
    deep = {"extensions": {"x": deep_list(5_000)}, "customer": {"name": "Alice"}}
    out = apply_mapping(deep, {"customer.name": "customer.full_name"}, {})
    assert out["customer"] == {"full_name": "Alice"} and out["extensions"]["x"] is not deep["extensions"]["x"]
    assert value_depth(copy_json(deep)) == value_depth(deep) == 5_002
    assert mask(deep, ["customer.name"])["customer"]["name"] == "A***e"


def test_deep_jsonl_record_is_a_rejected_line_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": ' + b"[" * 5_000 + b"]" * 5_000 + b"}\n")
    with pytest.raises(FileRejected, match=r"line 2: .*limit of 64 levels"):
        list(iter_records(path, cfg(format="jsonl")))


def test_deep_xml_is_refused_naming_the_limit() -> None:
    with pytest.raises(TooDeep, match="limit of 10 levels"):
        xmlsafe.parse(b"<a>" * 11 + b"</a>" * 11, max_depth=10)
    with pytest.raises(TooDeep, match="limit of 64 levels"):  # past libxml2's own 256 too
        xmlsafe.parse(b"<a>" * 10_000 + b"</a>" * 10_000)
    assert xmlsafe.parse(b"<a>" * 10 + b"</a>" * 10, max_depth=10) is not None
