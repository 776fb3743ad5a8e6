"""Streaming record readers of the SFTP source (no server needed): encodings, formats, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.sftp.config import SftpSourceConfig
from connectors.sftp.records import FileRejected, iter_records, read_records
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


def test_truncated_gbk_file_names_the_line_and_byte_offset_in_the_file(tmp_path: Path) -> None:
    whole = "客户名称,城市\n甲公司,杭州\n乙公司,宁波\n".encode("gbk")
    path = tmp_path / "cut.csv"
    path.write_bytes(whole[:-2])  # cut inside the last "波": its lead byte is left alone
    line3 = len("客户名称,城市\n甲公司,杭州\n".encode("gbk"))
    bad = line3 + len("乙公司,宁".encode("gbk"))
    with pytest.raises(FileRejected) as exc:
        list(iter_records(path, cfg(encoding="gbk")))
    assert str(exc.value).startswith(f"line 3, byte {bad}: not valid gbk: incomplete multibyte sequence")
    assert "of a chunk" not in str(exc.value)


def test_bad_byte_in_the_middle_is_placed_too(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"a": "x\xff"}\n')
    with pytest.raises(FileRejected, match=r"^line 2, byte 20: not valid utf-8: invalid start byte \(bytes ff\)"):
        list(iter_records(path, cfg(format="jsonl")))


def test_record_digests_repeat_when_the_file_grew_and_differ_for_another_name(tmp_path: Path) -> None:
    """A file read again after it grew repeats the keys of the records it already had."""
    head = "名称,值\n甲,1\n乙,2\n".encode("gbk")
    short, grown = tmp_path / "a.csv", tmp_path / "b.csv"
    short.write_bytes(head)
    grown.write_bytes(head + "丙,3\n".encode("gbk"))
    c = cfg(encoding="gbk")
    first = list(read_records(short, c, b"route\0a.csv\0"))
    again = list(read_records(grown, c, b"route\0a.csv\0"))
    other = list(read_records(short, c, b"route\0other.csv\0"))
    assert [r.digest for r in again[:2]] == [r.digest for r in first] and len(again) == 3
    assert len({r.digest for r in again}) == 3
    assert not {r.digest for r in other} & {r.digest for r in first}


def test_utf16_is_refused_at_load_since_lines_are_split_on_bytes() -> None:
    with pytest.raises(ValueError, match="not ASCII-compatible"):
        cfg(encoding="utf-16")


def test_legacy_done_suffix_and_min_age_still_mean_a_completion_rule() -> None:
    assert cfg(done_suffix=".ok").completion.rule == "done_file"
    assert cfg(done_suffix=".ok").completion.done_suffix == ".ok"
    assert cfg(min_age_s=5).completion.quiet_s == 5
    assert cfg().completion.rule == "quiescence" and cfg().empty_files == "leave"
