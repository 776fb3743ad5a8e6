"""Catalogue coverage and the generated product docs (app/catalogue.py, config/catalogue.yaml,
docs/products.md): every ID of issues 11 and 12 has a blueprint (or its declared carrier), every A.6
code + state has a sending stage, ``hub flows coverage`` exits 1 naming what is missing, and
docs/products.md is regenerated whenever a blueprint, product file or the catalogue changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.catalogue import Catalogue, CodeRow, code_senders, coverage, load_catalogue, products_md, stages_of
from app.cli.flows import flows_app
from flows.graph.check import partner_operations
from flows.graph.library import load_library
from flows.graph.rules import FieldRule
from hub.order import WorkOrder
from hub.partners import load_partners
from hub.products import check_order, load_products
from hub.settings import PROJECT_ROOT
from simulators.demo import all_samples
from simulators.fieldapp import sample_fields

CONFIG = PROJECT_ROOT / "config"
SHIPPED = PROJECT_ROOT / "docs" / "products.md"


@pytest.fixture(scope="module")
def library() -> Any:
    return load_library(CONFIG, partner_operations(load_partners(CONFIG)))


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(CONFIG)


def test_the_shipped_catalogue_is_the_scope_of_issues_11_and_12(catalogue: Catalogue) -> None:
    ids = [r.id for r in catalogue.ids]
    assert len(ids) == len(set(ids))
    for prefix, issue in (("P01.", 11), ("P06.", 12), ("P25.", 12), ("P36.", 11), ("D.3", 11), ("D.4", 11)):
        assert any(i.startswith(prefix) for i in ids) and {r.issue for r in catalogue.ids if
                                                            r.id.startswith(prefix)} == {issue}
    assert {"P19.1", "P19.5", "P27.3", "P29.3", "P12.5"} <= set(ids)  # merged rows expanded
    pairs = {c.key for c in catalogue.progress_codes}
    assert len(pairs) == 29 and len({c.code for c in catalogue.progress_codes}) == 24  # as A.6 counts them


def test_every_catalogue_id_is_carried(library: Any, catalogue: Catalogue) -> None:
    missing = [r.row.id for r in coverage(catalogue, library, PROJECT_ROOT) if r.missing]
    assert missing == [], f"catalogue IDs without a blueprint: {missing}"


def test_every_a6_code_has_a_sending_stage_and_no_blueprint_sends_an_unlisted_one(
        library: Any, catalogue: Catalogue) -> None:
    senders = code_senders(library)
    listed = {c.key for c in catalogue.progress_codes}
    assert sorted(listed - set(senders)) == [], "A.6 codes no blueprint stage sends"
    assert sorted(set(senders) - listed) == [], "codes sent that A.6 does not list"


def test_senders_and_stages_are_read_from_the_reports_and_edges(library: Any) -> None:
    lan = library.get("5g_lan", "open")
    senders = code_senders([lan])
    assert {c: [(s.node, s.targets) for s in v] for c, v in senders.items()}["B005f"] == [("hq_ne_data", ("E", "G"))]
    assert set(senders) == {"B001p", "B002f", "B003f", "B004f", "B005f", "B006p"}
    stages = stages_of(lan)
    assert stages[:4] == ["accept", "core_design", "network_change", "core_construction"]
    assert stages.index("hq_ne_data") < stages.index("office_data")  # B005 before B004


def test_a_code_without_sender_and_an_id_without_blueprint_are_named(library: Any, catalogue: Catalogue) -> None:
    extra = Catalogue(ids=[*catalogue.ids[:1], catalogue.ids[0].model_copy(update={"id": "P99.1"})],
                      progress_codes=[CodeRow(code="Z999", state="finished", product="p", scenario="s", stage="x",
                                              to="G")])
    text = products_md(list(library), extra, {}, PROJECT_ROOT)
    assert "| Z999f | p · s · x → G | **no sender** |" in text
    assert "| P99.1 | " in text and "**MISSING**" in text and "1 missing: P99.1" in text


def test_products_md_is_not_stale(library: Any, catalogue: Catalogue) -> None:
    """docs/products.md = the blueprints now; regenerate with ``hub flows docs -o docs/products.md``."""
    text = products_md(list(library), catalogue, load_products(CONFIG), PROJECT_ROOT)
    assert SHIPPED.read_text(encoding="utf-8") == text, "stale: run hub flows docs -o docs/products.md"


def test_demo_all_posts_one_valid_admitted_order_per_blueprint(library: Any) -> None:
    """``hub demo --all``'s orders come from the product field files: each is a valid canonical order,
    passes its product's field rules and has the blueprint it was made for (what the intake checks)."""
    products = load_products(CONFIG)
    samples = all_samples(library, products, "t")
    keys = {(bp.product, bp.scenario) for bp in library if bp.product and bp.scenario and bp.scenario != "withdraw"}
    assert {(b["product"], b["scenario"]) for _, b in samples} == keys and len(samples) == len(keys)
    for partner, body in samples:
        order = WorkOrder.model_validate(body)
        assert partner in {"esop", "group", "yunneng", "boss"} and library.get(order.product, order.scenario)
        if order.product in products:
            check_order(products[order.product], order.scenario.value, order.model_dump(mode="json",
                                                                                         exclude_none=True))
    (lan,) = [b for _, b in all_samples(library, products, "t", only=["5g_lan"]) if b["scenario"] == "open"]
    assert lan["extensions"]["dnn"] == "5glan.zj"  # the product file's sample


def test_coverage_command_exits_1_naming_every_missing_id(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(CONFIG / "flows" / "internet_line" / "open.yaml", flows / "open.yaml")
    res = CliRunner().invoke(flows_app, ["coverage", "--dir", str(flows)])
    assert res.exit_code == 1, res.output
    lines = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert lines["P02.1"].split()[1:] == ["11", "p02-1-internet-line-open", "(specified)"]
    assert lines["P01.1"].split()[1:] == ["11", "MISSING"]
    assert lines["P36.1"].split()[1:] == ["11", "config/tasks/wireless.yaml"]
    assert "1 specified, 0 inferred only, 2 carried by another file, 153 missing: P01.1" in res.output
    res = CliRunner().invoke(flows_app, ["coverage", "--dir", str(flows), "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert len(doc["missing"]) == 153 and "P02.1" not in doc["missing"]
    (p02,) = [r for r in doc["ids"] if r["id"] == "P02.1"]
    assert p02["blueprints"] == ["p02-1-internet-line-open"] and p02["sources"] == ["specified"]


def test_the_demo_field_app_fills_a_locked_field_the_stage_still_requires_and_report_urls() -> None:
    """P30.2 accept: 业务验证班组 carries a lock (forbidden when changetype=1) yet is required for 3/4/7 — the
    demo resubmits with the fields the stage named; D.4's test report must be a document URL."""
    team = FieldRule(name="verify_team", required_when="data.changetype in ['3']",
                     lock=[{"when": "data.changetype == '1'", "value": "''"}])
    report = FieldRule(name="report", required=True, regex=r"(sftp|https?)://\S+\.(pdf|docx?)")
    assert "verify_team" not in sample_fields([team, report])
    assert sample_fields([team, report], {"verify_team"}) == {"verify_team": "demo-verify_team",
                                                               "report": "https://example.com/demo.pdf"}
