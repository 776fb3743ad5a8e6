"""Streaming record readers of the SFTP source (no server needed): encodings, formats, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.sftp.config import SftpSourceConfig
from connectors.sftp.records import FileRejected, iter_records
from connectors.sftp.sink import UnsafePath, fixed_prefix, render_path


def cfg(**kw: Any) -> SftpSourceConfig:
    return SftpSourceConfig.model_validate({"partner": "boss", "connection": {"embedded": True}, "dir": "/in", **kw})


def test_gb18030_csv_with_quoted_fields_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes('名称,备注\n"甲公司","含,逗号"\n\n乙公司,𠀀\n'.encode("gb18030"))
    assert list(iter_records(path, cfg(encoding="gb18030"))) == [
        (2, {"名称": "甲公司", "备注": "含,逗号"}), (4, {"名称": "乙公司", "备注": "𠀀"})]


def test_wrong_encoding_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("名称\n甲公司\n".encode("gbk"))
    with pytest.raises(FileRejected, match="not valid utf-8"):
        list(iter_records(path, cfg(encoding="utf-8")))


def test_headerless_csv_uses_configured_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("A-1|100\nA-2|200\n")
    rows = list(iter_records(path, cfg(csv={"delimiter": "|", "columns": ["id", "bw"]})))
    assert [r for _, r in rows] == [{"id": "A-1", "bw": "100"}, {"id": "A-2", "bw": "200"}]


def test_jsonl_rejects_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(FileRejected, match="line 2: a record must be a JSON object"):
        list(iter_records(path, cfg(format="jsonl")))


def test_xml_records_are_streamed_and_dtds_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_bytes('<?xml version="1.0" encoding="GBK"?><file><record><id>1</id><name>甲</name></record>'
                     "<record><id>2</id><name>乙</name></record></file>".encode("gbk"))
    assert [r for _, r in iter_records(path, cfg(format="xml"))] == [{"id": "1", "name": "甲"},
                                                                      {"id": "2", "name": "乙"}]
    evil = tmp_path / "e.xml"
    evil.write_text('<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><f><record>'
                    "<id>&x;</id></record></f>")
    with pytest.raises(FileRejected, match="DTD"):
        list(iter_records(evil, cfg(format="xml")))


def test_path_template_of_seeds_003_12_2() -> None:
    template = "/GW/{province}/changeProdStaDerateForm/{yyyy}/{mm}/{yyyymmdd}{seq:04d}.{ext}"
    path = render_path(template, {"province": "BJ00", "yyyy": "2023", "mm": "04", "yyyymmdd": "20230410",
                                  "seq": 1, "ext": "jpg"})
    assert path == "/GW/BJ00/changeProdStaDerateForm/2023/04/202304100001.jpg"
    assert fixed_prefix(template) == "/GW/"
    with pytest.raises(UnsafePath, match="needs 'province'"):
        render_path(template, {"yyyy": "2023"})
