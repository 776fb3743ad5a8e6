"""Installation-address normalisation for grouping fusion members by address (D.1.3).

Why: one construction task per installation address, and ESOP's members of one group are typed by
different people — ``郑州市金水区花园路１８号`` and ``河南省郑州市 金水区花园路18號`` are the same door.
Two addresses are the same when their :func:`normalise` keys are equal. The steps, in order (also in
docs/fusion.md):

1. Unicode NFKC: full-width letters, digits, spaces and punctuation become half-width (``１８`` → ``18``,
   ``（`` → ``(``), ASCII letters are upper-cased (``a座`` = ``A座``);
2. traditional / variant characters of address words: 號→号, 樓→楼, 區→区, 縣→县, 層→层, 棟→栋, 門→门,
   鄉→乡, 鎮→镇, 園→园, 廣→广, 東→东, 陽→阳, 開→开, 發→发; ``#`` after a number is 号 (``18#`` = ``18号``);
   ``F`` after a number is 层 (``5F`` = ``5层``);
3. dashes of every width (``－—–‐``) become ``-``; every other punctuation mark and every space is dropped;
4. a leading province (the order's ``province`` or any of the 34 provincial names, with or without
   省/市/自治区…), then the order's city (with or without 市) are dropped from the detail, and the
   district: the order's ``district`` if it has one, else the first 区/县/旗/市 word of what is left.

The key is ``city/district/rest`` (city and district without their 市 / 区县 suffix): the same street
in two cities or two districts is two addresses.
Not done (said in docs): Chinese numerals (八十八号 ≠ 88号), abbreviations (路 vs 大道), typos.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

VARIANTS = str.maketrans({"號": "号", "樓": "楼", "區": "区", "縣": "县", "層": "层", "棟": "栋", "門": "门",
                          "鄉": "乡", "鎮": "镇", "園": "园", "廣": "广", "東": "东", "陽": "阳", "開": "开",
                          "發": "发", "－": "-", "—": "-", "–": "-", "‐": "-", "―": "-"})

PROVINCES = ("北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽",
             "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西",
             "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门")
_PROVINCE_SUFFIX = ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "特别行政区", "省", "市")
_CITY_SUFFIX = ("市", "地区", "盟")
_DISTRICT_SUFFIX = ("区", "县", "旗", "市")
_NUMBER_SIGN = re.compile(r"(\d)#")
_FLOOR = re.compile(r"(\d)F")
_DISTRICT = re.compile(r"^(.{1,8}?(?:区|县|旗|市))")


@dataclass(frozen=True)
class Normalised:
    key: str  #: city/district/rest: equal keys = one installation address
    city: str
    district: str  #: the district (区县) without its 区/县/旗/市: the team table's key with the city


def clean(text: str | None) -> str:
    """Steps 1-3: half-width, variants, no spaces or punctuation (dashes kept as ``-``)."""
    s = unicodedata.normalize("NFKC", text or "").translate(VARIANTS).upper()
    s = _NUMBER_SIGN.sub(r"\1号", s)
    s = _FLOOR.sub(r"\1层", s)
    return "".join(ch for ch in s if ch == "-" or not (unicodedata.category(ch)[0] in "PZS" or ch.isspace()))


def _strip(text: str, name: str, suffixes: tuple[str, ...]) -> str:
    """``text`` without a leading ``name`` (with any of ``suffixes``)."""
    if not name:
        return text
    for suffix in (*suffixes, ""):
        if text.startswith(name + suffix):
            return text[len(name + suffix):]
    return text


def _bare(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def normalise(detail: str, *, city: str = "", province: str | None = None, district: str | None = None
              ) -> Normalised:
    """The grouping key of one installation address (the order's ``addresses[]`` entry's fields)."""
    rest = clean(detail)
    prov = _bare(clean(province), _PROVINCE_SUFFIX) if province else ""
    for name in ([prov] if prov else []) + [p for p in PROVINCES if p != prov]:
        stripped = _strip(rest, name, _PROVINCE_SUFFIX)
        if stripped != rest:
            rest = stripped
            break
    city_bare = _bare(clean(city), _CITY_SUFFIX)
    rest = _strip(rest, city_bare, _CITY_SUFFIX)
    if district:
        dist = _bare(clean(district), _DISTRICT_SUFFIX)
        rest = _strip(rest, dist, _DISTRICT_SUFFIX)
    else:
        m = _DISTRICT.match(rest)
        found = m.group(1) if m and len(m.group(1)) < len(rest) else ""
        rest, dist = rest[len(found):], _bare(found, _DISTRICT_SUFFIX)
    return Normalised(key=f"{city_bare}/{dist}/{rest}", city=city_bare, district=dist)
