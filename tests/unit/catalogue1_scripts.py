"""The recorded orders of the catalogue-I blueprints: one per blueprint, plus one per branch a row names.

Why a table: every blueprint of engineer B's rows (CATALOGUE P01–P05, P13–P15, P19–P24, P33–P35) gets its
own recording (tests/fixtures/flows/replay/catalogue1_<name>.json) made from a script here; branches the
rows give (驳回 paths, the G9 audit loop, SPN/PTN activation, on-site removal or not, fusion or not, a
refused call retried) get one more each. ``BLUEPRINT_FILES`` lists the blueprints these rows own, so a
new one without a recording fails catalogue1_replay_test.
"""

from __future__ import annotations

from typing import Any

from hub.settings import PROJECT_ROOT
from tests.unit.catalogue1_world import Script, order

#: the product folders of catalogue I's rows (P02.1 internet_line/open.yaml is the shipped blueprint's)
PRODUCTS = ["dynamic_ip_line", "business_express", "transmission_line", "mpls_vpn", "line_extension",
            "p14_construction", "voice_line", "edge_cloud_gpu", "edge_cloud_disk", "edge_cloud_backup",
            "edge_cloud_db", "edge_cloud_gateway", "security_package", "security_cm2", "cloud_pc", "industry_video",
            "video_micro", "video_mv_line", "broadband_pbx", "ecloud_wireless", "ecloud_network", "ecloud_micro"]
FLOWS = PROJECT_ROOT / "config/flows"
BLUEPRINT_FILES = sorted(
    [str(p.relative_to(PROJECT_ROOT)) for prod in PRODUCTS for p in (FLOWS / prod).glob("*.yaml")]
    + ["config/flows/internet_line/move.yaml"])

FUSION = {"fusion_key": "FK-1", "is_fusion": True, "related_count": 2, "related_order_ids": ["E-2"]}


def _default(rel: str) -> Script:
    product, scenario = rel.split("/")[-2], rel.rsplit("/", 1)[-1].removesuffix(".yaml")
    if product == "p14_construction":
        return Script({"order_id": "O0", "external_order_id": "E-0", "product": "internet_line",
                       "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}], "team": "hz-install-1",
                       "design": {"needs_construction": True}})
    return Script(order(product, scenario, f"E-{product[:12]}-{scenario[:10]}".replace("_", "-")))


SCRIPTS: dict[str, tuple[str, Script]] = {
    rel.removeprefix("config/flows/").removesuffix(".yaml").replace("/", "__"): (rel, _default(rel))
    for rel in BLUEPRINT_FILES
}


def _variant(name: str, rel: str, **changes: Any) -> None:
    script = _default(rel)
    for key, value in changes.items():
        if key == "extensions":
            script.order["extensions"].update(value)
        elif key in ("fusion", "access_type", "addresses"):
            script.order[key] = value
        else:
            setattr(script, key, value)
    SCRIPTS[name] = (rel, script)


# branches the rows name
_variant("transmission_line__open_audit_loop", "config/flows/transmission_line/open.yaml",  # G9
         submissions={"verification": [{"verify_result": "不通过", "verify_note": "光功率低"},
                                        {"verify_result": "通过"}]})
_variant("transmission_line__open_rejected_change", "config/flows/transmission_line/open.yaml",  # G10
         submissions={"network_change": [{"change_result": "驳回"}, {"change_result": "完成"}]})
_variant("mpls_vpn__open_no_construction", "config/flows/mpls_vpn/open.yaml",
         results={"resource.design_request": {"construction": "否"}})
_variant("mpls_vpn__open_audit_loop", "config/flows/mpls_vpn/open.yaml",  # G9
         submissions={"verification": [
             {"gpon_line_test": "通过", "dial_test": "不通过", "alarm_check": "通过", "label_print": "已打印"},
             {"gpon_line_test": "通过", "dial_test": "通过", "alarm_check": "通过", "label_print": "已打印"}]})
_variant("line_extension__open_rejected", "config/flows/line_extension/open.yaml", addresses=[])  # 驳回ESOP
_variant("line_extension__open_dispatch_failed_then_retried", "config/flows/line_extension/open.yaml",
         reject=["zq.install_dispatch"])  # G3: the result ≠ success, the user clicks again
_variant("internet_line__move_spn", "config/flows/internet_line/move.yaml", access_type="SPN")
_variant("dynamic_ip_line__open_no_construction", "config/flows/dynamic_ip_line/open.yaml",
         results={"resource.design_request": {"needs_construction": False}})
_variant("dynamic_ip_line__open_3a_refused_then_retried", "config/flows/dynamic_ip_line/open.yaml",
         reject=["aaa.account_open"])
_variant("edge_cloud_gpu__open_review_rejected", "config/flows/edge_cloud_gpu/open.yaml",  # G10
         submissions={"design_review": [{"review_result": "驳回", "review_opinion": "规格不符"},
                                        {"review_result": "通过"}]})
_variant("security_cm2__change_approval_rejected", "config/flows/security_cm2/change_approval.yaml",
         submissions={"approval": [{"approval_result": "驳回"}]})
_variant("video_micro__unsubscribe_onsite_removal", "config/flows/video_micro/unsubscribe.yaml",
         extensions={"onsite_removal": "是"})
_variant("industry_video__withdraw_unsubscribe", "config/flows/industry_video/withdraw.yaml",
         extensions={"withdraw_target": "unsubscribe"})
_variant("broadband_pbx__open_fusion", "config/flows/broadband_pbx/open.yaml", fusion=FUSION)
_variant("broadband_pbx__scale_down_fusion", "config/flows/broadband_pbx/scale_down.yaml", fusion=FUSION)
_variant("ecloud_micro__open_fusion", "config/flows/ecloud_micro/open.yaml", fusion=FUSION)
_variant("security_package__open_compute_refused_then_retried", "config/flows/security_package/open.yaml",
         reject=["compute_platform.compute_open"])  # a synchronous REST refusal: G3 text, clicked again
