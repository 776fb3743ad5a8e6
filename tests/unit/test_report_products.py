"""Every product a report definition names (config/reports/*.yaml) is one the hub's orders carry: the
``product`` of some blueprint under config/flows/ (the order model's product id, issue 11 §7). A report
keyed on another name (``cross_province_mpls_vpn`` for the blueprint's ``cross_province_mpls``) never
matches an order, so nothing was ever reported for it and no test noticed. The one exception is a
reporting-only product CATALOGUE.md names ("Reporting-only products (no flow in the seeds)"): it has no
blueprint by design, so its report must carry that title."""

from __future__ import annotations

import re
from pathlib import Path

from app.reports.definitions import load_reports
from flows.graph.check import partner_operations
from flows.graph.library import load_library
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT

CONFIG: Path = PROJECT_ROOT / "config"
CATALOGUE: Path = PROJECT_ROOT.parent / "shared" / "CATALOGUE.md"
#: CATALOGUE.md's list of reporting-only products (used when ../shared is not checked out next to the repo)
REPORT_ONLY_TITLES = frozenset({"企业宽带", "千里眼", "云视讯", "专线卫士", "自用传输专线", "视频监控专线", "视联网",
                                "总部SD-WAN"})


def _report_only_titles() -> frozenset[str]:
    if not CATALOGUE.exists():
        return REPORT_ONLY_TITLES
    line = next(ln for ln in CATALOGUE.read_text(encoding="utf-8").splitlines()
                if ln.startswith("Reporting-only products"))
    listed = line.split(":", 1)[1].split("(see", 1)[0]
    titles = frozenset(t.strip(" .") for t in re.split(r"[,，]", listed) if t.strip(" ."))
    assert titles == REPORT_ONLY_TITLES, "CATALOGUE.md's reporting-only list changed: update this test"
    return titles


def test_every_reported_product_is_a_blueprint_product_or_a_reporting_only_one() -> None:
    partners = load_partners(CONFIG)
    carried = {bp.product for bp in load_library(CONFIG, partner_operations(partners)) if bp.product}
    report_only = _report_only_titles()
    unknown = [f"{r.source}: reports.{r.name}.products: {p!r} (title {r.definition.title!r})"
               for r in load_reports(CONFIG, partners).by_name.values() for p in r.definition.products
               if p not in carried and r.definition.title not in report_only]
    assert not unknown, "no blueprint carries these products:\n" + "\n".join(unknown)


def test_a_cross_province_report_names_only_cross_province_products() -> None:
    """C.5 (1) counts a cross_province report's orders as 跨省: an in-province product must not be among them
    (跨省互联网/商务快线 is P11 + P12, not P03's in-province 商务快线 business_express)."""
    reports = load_reports(CONFIG, load_partners(CONFIG))
    in_province = {"business_express", "internet_line", "mpls_vpn", "transmission_line"}
    wrong = [(r.name, p) for r in reports.by_name.values() if r.definition.cross_province
             for p in r.definition.products if p in in_province]
    assert not wrong
