"""Address normalisation of fusion members (issue 13 §3, D.1.3): table-driven, real-looking addresses.

Each row is (detail, city, province, district) pairs that must give the SAME key, or must NOT."""

from __future__ import annotations

import pytest

from flows.fusion.address import normalise

SAME = [
    # full-width digits and 號 vs 号, province and city prefixes, spaces
    (("郑州市金水区花园路１８号", "郑州", None, None), ("河南省郑州市 金水区花园路18號", "郑州市", None, None)),
    # the structured district given on one side only
    (("花园路18号", "郑州", None, "金水区"), ("郑州市金水区花园路18号", "郑州市", "河南省", None)),
    # 18# = 18号, full-width punctuation and brackets dropped
    (("金水区花园路18#（国贸中心）", "郑州", None, None), ("金水区花园路18号国贸中心", "郑州", None, None)),
    # 5F = 5层, full-width letters upper/lower case, 樓 / 層 variants
    (("中原区建设西路１１号Ａ座5F", "郑州", None, None), ("中原区建设西路11号a座5層", "郑州", None, None)),
    # dashes of every width, full-width space
    (("洛阳市涧西区南昌路3－2号", "洛阳", None, None), ("洛阳市涧西区　南昌路3-2号", "洛阳市", "河南", None)),
    # a province written with 省 and a county-level city as the district
    (("河南省巩义市紫荆路1号", "郑州", None, None), ("巩义市紫荆路1號", "郑州", None, "巩义市")),
    # 區 / 縣 / 東 variants and commas
    (("开封市龙亭區宋都御街東段,8号", "开封", None, None), ("开封市龙亭区宋都御街东段8号", "开封", None, None)),
]

DIFFERENT = [
    # another number on the same road
    (("郑州市金水区花园路18号", "郑州", None, None), ("郑州市金水区花园路16号", "郑州", None, None)),
    # the same street in another district
    (("金水区建设路1号", "郑州", None, None), ("中原区建设路1号", "郑州", None, None)),
    # the same street and number in another city
    (("建设路1号", "郑州", None, "中原区"), ("建设路1号", "洛阳", None, "中原区")),
    # a dash is kept: 3-301 is not 33-01
    (("花园路3-301室", "郑州", None, "金水区"), ("花园路33-01室", "郑州", None, "金水区")),
]


def key(row: tuple[str, str, str | None, str | None]) -> str:
    detail, city, province, district = row
    return normalise(detail, city=city, province=province, district=district).key


@pytest.mark.parametrize(("a", "b"), SAME, ids=[r[0][0] for r in SAME])
def test_same_installation_address(a: tuple[str, str, str | None, str | None],
                                   b: tuple[str, str, str | None, str | None]) -> None:
    assert key(a) == key(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=[r[0][0] for r in DIFFERENT])
def test_different_installation_address(a: tuple[str, str, str | None, str | None],
                                        b: tuple[str, str, str | None, str | None]) -> None:
    assert key(a) != key(b)


def test_district_found_in_the_detail_or_given() -> None:
    assert normalise("河南省郑州市管城回族区紫荆山路1号", city="郑州").district == "管城回族"
    assert normalise("紫荆山路1号", city="郑州", district="管城回族区").district == "管城回族"
    assert normalise("郑州市金水区花园路18号", city="郑州").key == "郑州/金水/花园路18号"
