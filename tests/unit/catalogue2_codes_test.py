"""The progress-code index A.6 (CATALOGUE, issue 12 §4, §6): for every code+state, the blueprint and stage
that sends it and to whom — generated from the shipped blueprints and checked against the A.6 list.

Notation (CATALOGUE legend): ``B001p`` = ``B001processing``, sent on entering the stage, gated (the order
may not enter until it succeeded); ``B002f`` = ``B002finished``, sent on submitting, gated (the stage may
not be left until it succeeded). G = 一编 (group), E = ESOP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.catalogue2_play_test import library

G, GE = frozenset({"group"}), frozenset({"group", "esop"})
#: A.6 as (code+state, product, scenario, stage, targets); "p" = processing, "f" = finished
A6: set[tuple[str, str, str, str, frozenset[str]]] = {
    ("A001p", "5g_lan", "survey", "accept", GE), ("A003f", "5g_lan", "survey", "survey_audit", GE),
    ("A004f", "5g_lan", "survey", "close_report", GE),
    ("B001p", "5g_lan", "open", "accept", GE), ("B002f", "5g_lan", "open", "core_construction", GE),
    ("B003f", "5g_lan", "open", "core_allocation", GE), ("B005f", "5g_lan", "open", "hq_ne_data", GE),
    ("B004f", "5g_lan", "open", "office_data", GE), ("B006p", "5g_lan", "open", "verification", GE),
    ("E001p", "5g_lan", "remove", "accept", GE), ("E001f", "5g_lan", "remove", "network_change", GE),
    ("E002p", "5g_lan", "remove", "hq_ne_delete", GE), ("E003p", "5g_lan", "remove", "province_ne_delete", GE),
    ("E004p", "5g_lan", "remove", "removal_summary", GE),
    ("B601p", "dual_domain_cross_province", "open", "accept", G),
    ("B601f", "dual_domain_cross_province", "open", "accept", G),
    ("B602p", "dual_domain_cross_province", "open", "design", G),
    ("B602f", "dual_domain_cross_province", "open", "network_change", G),   # (sic)
    ("B608p", "dual_domain_cross_province", "open", "close_report", G),
    ("B601p", "dual_domain_multi_dnn", "open", "accept", GE),
    ("D601p", "dual_domain_cross_province", "change", "accept", G),
    ("D601f", "dual_domain_cross_province", "change", "accept", G),
    ("D602p", "dual_domain_cross_province", "change", "design", G),
    ("D608p", "dual_domain_cross_province", "change", "close_report", G),
    ("D601p", "dual_domain_multi_dnn", "change", "accept", GE),
    ("D607p", "dual_domain_multi_dnn", "change", "verification", GE),
    ("D608p", "dual_domain_multi_dnn", "change", "close_report", GE),
    ("E601p", "dual_domain_cross_province", "remove", "accept", G),
    ("E601f", "dual_domain_cross_province", "remove", "accept", G),
    ("E602p", "dual_domain_cross_province", "remove", "design", G),
    ("E605p", "dual_domain_cross_province", "remove", "verification", G),
    ("E606p", "dual_domain_cross_province", "remove", "close_report", G),
    ("E601p", "dual_domain_multi_dnn", "remove", "accept", GE),
    ("E602p", "dual_domain_multi_dnn", "remove", "design", GE),
    ("E605p", "dual_domain_multi_dnn", "remove", "verification", GE),
}


def senders() -> list[dict[str, Any]]:
    """Every progress-code report in the library: code+state, blueprint, node, its stage, when, to whom."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for bp in library():
        for node_name, node in bp.nodes.items():
            for r in node.reports:
                code = r.payload.get("progress_code", "").strip("'")
                if not code:
                    continue
                stage = r.payload.get("stage", f"'{node_name}'").strip("'")
                short = code[:4] + code[4:5]          # B001processing → B001p
                row = found.setdefault((short, bp.name, node_name), {
                    "code": short, "blueprint": bp.name, "product": bp.product, "scenario": bp.scenario,
                    "node": node_name, "stage": stage, "at": r.at, "gate": r.gate, "to": set()})
                row["to"].add(r.partner)
    return list(found.values())


def test_a6_table_generated_from_the_blueprints_is_the_a6_list() -> None:
    generated = {(r["code"], r["product"], r["scenario"], r["stage"], frozenset(r["to"])) for r in senders()}
    assert generated - A6 == set(), "codes sent that A.6 does not list (or to other targets)"
    assert A6 - generated == set(), "A.6 codes with no sender"


def test_a6_has_24_distinct_codes_and_29_code_state_pairs() -> None:
    """The catalogue's own count of A.6 (a check that the list above is the whole index)."""
    pairs = {c for c, *_ in A6}
    assert (len({c[:4] for c in pairs}), len(pairs)) == (24, 29)


@pytest.mark.parametrize("row", senders(), ids=lambda r: f"{r['code']}@{r['blueprint']}.{r['node']}")
def test_p_codes_go_out_on_entering_f_codes_on_submitting_and_every_one_is_gated(row: dict[str, Any]) -> None:
    assert row["at"] == ("enter" if row["code"].endswith("p") else "exit")
    assert row["gate"], "G2: the order does not move on before the report succeeded"


def table() -> str:
    """The A.6 table as Markdown (code → blueprint, stage, targets), for the issue's note."""
    lines = ["| code | blueprint | stage | at | to |", "|---|---|---|---|---|"]
    for r in sorted(senders(), key=lambda r: (r["code"], r["blueprint"])):
        lines.append(f"| {r['code']} | {r['blueprint']} | {r['node']} | {r['at']} | {'+'.join(sorted(r['to']))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
