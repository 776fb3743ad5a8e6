"""The attachment upload rule of seed 003 (app/reports/attachments.py, D.2.5-D.2.6): refusals by
name, by content (magic bytes, never the extension) and by size; and a blueprint stage that cannot
be submitted until it carries the path an upload returned (a user node's field rule)."""

from __future__ import annotations

from typing import Any

import pytest

from app.reports.attachments import MAX_BYTES, MAX_PHOTO_BYTES, PATH_REGEX, AttachmentRefused, check, remote_path
from flows.graph import Blueprint
from tests.unit.flows_graph_harness import Driver, one

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def refused(name: str, data: bytes, kind: Any = "form") -> tuple[str, int]:
    with pytest.raises(AttachmentRefused) as exc:
        check(name, data, kind)
    return exc.value.errors[0]["field"], exc.value.status


def test_a_pdf_and_a_jpeg_with_a_proper_name_pass_and_land_in_their_month() -> None:
    assert check("202304100001.pdf", PDF) == "pdf"
    assert check("202304100002.jpg", JPEG) == check("202304100003.jpeg", JPEG, "photo") == "jpeg"
    assert remote_path("BJ00", "202304100001.pdf") == "/GW/BJ00/changeProdStaDerateForm/2023/04/202304100001.pdf"


def test_the_type_is_checked_by_content_not_by_name() -> None:
    assert refused("202304100001.jpg", PNG) == ("content", 415)  # a PNG named .jpg
    assert refused("202304100001.jpg", PDF) == ("content", 415)  # a PDF named .jpg
    assert refused("202304100001.pdf", JPEG) == ("content", 415)
    assert refused("202304100001.jpg", b"GIF89a" + b"\x00" * 10) == ("content", 415)
    assert refused("202304100001.pdf", PDF, "photo") == ("content", 415)  # a photo is a JPEG (D.2.6)
    assert refused("202304100001.pdf", b"") == ("content", 400)


def test_too_big() -> None:
    assert refused("202304100001.pdf", PDF + b"\x00" * MAX_BYTES) == ("content", 413)
    assert check("202304100001.jpg", JPEG + b"\x00" * (MAX_PHOTO_BYTES + 1)) == "jpeg"  # a form photo: 10 MB
    assert refused("202304100001.jpg", JPEG + b"\x00" * MAX_PHOTO_BYTES, "photo") == ("content", 413)


@pytest.mark.parametrize("name", ["20230410001.pdf", "2023041000011.pdf", "202304100001.png", "202313100001.pdf",
                                  "202304310001.pdf", "../202304100001.pdf", "202304100001.pdf.exe", "a.pdf",
                                  "202304100001.PDF"])
def test_bad_names(name: str) -> None:
    assert refused(name, PDF)[0] == "name"


def test_a_bad_province_is_refused() -> None:
    with pytest.raises(AttachmentRefused):
        remote_path("../x", "202304100001.pdf")


def test_a_blueprint_stage_submits_only_with_the_path_an_upload_returned() -> None:
    b = Blueprint.model_validate({"name": "t", "start": "form", "nodes": {
        "form": {"kind": "user", "fields": [{"name": "form_path", "type": "str", "required": True,
                                             "regex": PATH_REGEX}], "next": "e"},
        "e": {"kind": "end"}}})
    d = Driver(b)
    d.receive()
    errors = one(d.send({"type": "submission", "node": "form", "fields": {}}), "reply")["errors"]
    assert errors == [{"field": "form_path", "message": "required"}] and d.nodes() == ["form"]
    bad = one(d.send({"type": "submission", "node": "form", "fields": {"form_path": "/tmp/x.pdf"}}), "reply")
    assert bad["errors"][0]["field"] == "form_path" and d.nodes() == ["form"]
    d.send({"type": "submission", "node": "form",
            "fields": {"form_path": remote_path("BJ00", "202304100001.pdf")}})
    assert d.status == "completed"
