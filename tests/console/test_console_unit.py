"""The console's pure parts: session cookies and CSRF tokens, labels, the SVG drawings, form values."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from app.console import i18n, session, svg
from app.console.actions import typed
from app.console.render import ENV, warm
from hub.settings import AdminToken

pytestmark = pytest.mark.unit
OP = AdminToken(name="zhang", role="operator", token=SecretStr("operator-secret-000001"))
VIEW = AdminToken(name="noc", role="viewer", token=SecretStr("viewer-secret-0000001"))


def test_a_session_cookie_proves_its_token_and_nothing_else() -> None:
    cookie = session.issue(OP, now=1000.0)
    s = session.verify([VIEW, OP], cookie, now=1001.0)
    assert s is not None and (s.principal.name, s.principal.role) == ("zhang", "operator")
    assert session.verify([VIEW, OP], cookie, now=1000.0 + session.SESSION_S + 1) is None  # expired
    payload, mac = cookie.split(".")
    assert session.verify([VIEW, OP], f"{payload}.{mac[:-2]}AA", now=1001.0) is None  # tampered signature
    forged = session.issue(AdminToken(name="zhang", role="operator", token=SecretStr("guessed-secret-00001")))
    assert session.verify([VIEW, OP], forged) is None  # signed with another secret
    rotated = AdminToken(name="zhang", role="operator", token=SecretStr("rotated-secret-000001"))
    assert session.verify([VIEW, rotated], cookie, now=1001.0) is None  # the token changed: sessions end
    demoted = AdminToken(name="zhang", role="viewer", token=OP.token)
    again = session.verify([demoted], cookie, now=1001.0)
    assert again is not None and again.principal.role == "viewer"  # the role is today's, not the cookie's
    for junk in (None, "", "a.b.c", "!!!.xyz", "e30.x"):
        assert session.verify([OP], junk) is None


def test_csrf_token_is_per_session_and_signing_out_revokes() -> None:
    a = session.verify([OP], session.issue(OP))
    b = session.verify([OP], session.issue(OP))
    assert a is not None and b is not None and a.csrf != b.csrf and len(a.csrf) >= 40
    cookie = session.issue(OP)
    s = session.verify([OP], cookie)
    assert s is not None
    session.revoke(s)
    assert session.verify([OP], cookie) is None


def test_sign_in_matches_the_configured_token_exactly() -> None:
    assert session.sign_in([VIEW, OP], "operator-secret-000001") == OP
    assert session.sign_in([VIEW, OP], "  viewer-secret-0000001 ") == VIEW
    assert session.sign_in([VIEW, OP], "operator-secret-00000") is None
    assert session.sign_in([VIEW, OP], "") is None


@pytest.mark.parametrize(("target", "expected"), [
    ("/console/orders?status=failed", "/console/orders?status=failed"), ("https://evil.example/", "/console"),
    ("//evil.example/console", "/console"), ("/console\\@evil", "/console"), (None, "/console"),
    ("/admin/v1/dlq", "/console")])
def test_after_sign_in_only_a_console_path(target: str | None, expected: str) -> None:
    assert session.safe_next(target) == expected


def test_every_label_in_both_languages_and_every_template_key_exists() -> None:
    assert set(i18n.LABELS["zh"]) == set(i18n.LABELS["en"])
    assert i18n.pick(None) == "zh" and i18n.pick("en") == "en" and i18n.pick("fr") == "zh"
    warm()  # every template compiles
    used: set[str] = set()
    for name in ENV.list_templates(extensions=["html"]):
        source = ENV.loader.get_source(ENV, name)[0]  # type: ignore[union-attr]
        used.update(re.findall(r"\bt\('([a-z_0-9]+)'\)", source))
    assert used and used <= set(i18n.LABELS["zh"]), used - set(i18n.LABELS["zh"])


def test_layout_ranks_forward_edges_and_sets_loops_apart() -> None:
    edges = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": ["b", "e"], "e": []}  # d -> b loops back
    placed, back = svg.layout("a", edges)
    assert back == {("d", "b")}
    rank = {n: r for n, (r, _) in placed.items()}
    assert rank["a"] == 0 and rank["b"] == rank["c"] == 1 and rank["d"] == 2 and rank["e"] == 3
    assert len({placed["b"], placed["c"]}) == 2  # side by side, not on top of each other
    lone = svg.layout("a", {"a": [], "x": ["a"]})[0]
    assert set(lone) == {"a", "x"}  # a node not reachable from the start still gets a place


def test_flow_diagram_shows_counts_and_escapes_titles() -> None:
    drawing = svg.flow_diagram("bp", "s", {"s": ("<受理>", "auto", ["w"]), "w": ("验证", "user", [])},
                               {"w": 7}, link=lambda n: f"/console/orders?stage={n}")
    assert "&lt;受理&gt;" in drawing and "<受理>" not in drawing
    assert re.search(r'<a href="/console/orders\?stage=w">.*>7</text></a>', drawing)
    assert drawing.count('class="node"') == 2 and drawing.count("<line") == 1


def test_charts() -> None:
    chart = svg.line_chart([("00:00", 10.0), ("01:00", None), ("02:00", 5.0), ("03:00", 0.0)])
    assert chart.count("<circle") == 3 and chart.count("<polyline") == 1  # the gap splits the line
    heat = svg.heatmap(["internet_line"], ["design", "close_report"], {("internet_line", "design"): 4},
                       link=lambda p, s: f"/console/orders?product={p}&stage={s}")
    assert "stage=design" in heat and "stage=close_report" not in heat  # an empty cell links nowhere
    assert svg.heatmap([], [], {}) == "" and svg.line_chart([]) == ""
    assert [svg.human_ms(v) for v in (None, 12, 1500, 600_000, 7_200_000 * 2, 86_400_000 * 3)] == [
        "-", "12 ms", "1.5 s", "10.0 min", "4.0 h", "3.0 d"]


def test_form_values_take_the_declared_type_or_stay_as_typed() -> None:
    assert typed("42", "int") == 42 and typed("4.5", "float") == 4.5 and typed("true", "bool") is True
    assert typed("x", "int") == "x"  # the API's own rule answers "must be int"
    assert typed("a, b", "list") == ["a", "b"] and typed('["a"]', "list") == ["a"]
    assert typed(" 是 ", "str") == "是"
