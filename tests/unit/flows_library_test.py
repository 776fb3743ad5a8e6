"""The blueprint library (flows/graph/library.py): every v2 file under config/flows/, `extends` and
`fragments` resolved, problems as `file:line: key: message` in the file that wrote them, and the
content digest an order pins (resolved, stable across processes, the same after a JSON round trip)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.graph.check import load_blueprint, partner_operations
from flows.graph.library import Library, load_library, restore
from flows.graph.model import Blueprint
from hub.errors import ConfigError
from hub.partners import load_partners
from tests.unit.flows_graph_harness import CAM_OPERATIONS, FIXTURES, Driver, of_type, one

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_FRAGMENTS = ROOT / "config" / "flows" / "fragments"

TEMPLATE = """\
name: line-standard
template: true
description: the standard line flow
section: §4
start: accept
nodes:
  accept: {kind: auto, title: 受理, next: design}
  design:
    kind: user
    title: 方案设计
    fields: [{name: ok, type: bool}]
    next: activation
  activation: {kind: call, title: 激活, steps: [{partner: ip_workbench, operation: activation}], next: done}
  done: {kind: end, status: completed}
"""

CHILD = """\
name: demo-open
extends: line-standard
product: demo
scenario: open
section: §9.9
nodes:
  design: null
  accept: {kind: auto, next: activation}
"""


def operations() -> dict[str, set[str]]:
    shipped = partner_operations(load_partners(ROOT / "config"))
    # the test blueprints' CAM operations beside the shipped cam partner's own (catalogue I's onu_replace…)
    return {**shipped, "cam": shipped.get("cam", set()) | CAM_OPERATIONS}


def write(cfg: Path, rel: str, text: str) -> Path:
    path = cfg / "flows" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(cfg: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_library(cfg, operations())
    return info.value.problems


def test_shipped_flows_load_and_the_close_out_fragments_are_there() -> None:
    lib = load_library(ROOT / "config", operations())
    assert {"close-out-esop", "close-out-group"} <= set(lib.fragments)
    v1 = {p.resolve() for p in (ROOT / "config" / "flows").glob("*.yaml")}
    assert not v1 & {p.resolve() for p in lib.files.values()}  # stages: files are not v2 blueprints


def test_a_child_replaces_template_nodes_whole_removes_with_null_and_its_top_level_keys_win(tmp_path: Path) -> None:
    write(tmp_path, "templates/line.yaml", TEMPLATE)
    child = write(tmp_path, "demo/open.yaml", CHILD)
    lib = load_library(tmp_path, operations())
    bp = lib.by_name("demo-open")
    assert bp is not None and list(lib) == [bp] and lib.files == {"demo-open": child}
    assert list(bp.nodes) == ["accept", "activation", "done"]  # design removed by null
    assert bp.nodes["accept"].title == "" and bp.nodes["accept"].next == "activation"  # replaced whole
    assert bp.start == "accept" and bp.description == "the standard line flow"  # the template's defaults
    assert bp.section == "§9.9"  # the child's key wins
    assert lib.by_name("line-standard") is None and "line-standard" in lib.templates  # never run itself
    assert lib.uses["demo-open"] == ("extends line-standard",)


def test_a_fragment_adds_its_nodes_which_may_point_at_the_blueprints_own(tmp_path: Path) -> None:
    for frag in SHIPPED_FRAGMENTS.glob("*.yaml"):
        write(tmp_path, f"fragments/{frag.name}", frag.read_text(encoding="utf-8"))
    write(tmp_path, "demo/open.yaml", """\
name: demo-open
product: demo
scenario: open
start: accept
fragments: [close-out-esop]
nodes:
  accept: {kind: auto, next: archive}
  done: {kind: end, reply: {order_id: order_id}}
""")
    bp = load_library(tmp_path, operations()).get("demo", "open")
    assert bp is not None and list(bp.nodes) == ["accept", "done", "archive", "close_report"]
    # the shipped close-out pair runs: RC archive, then the ESOP close-report, then the blueprint's end
    d = Driver(bp)
    archive = one(d.receive(external_order_id="E-1"), "send_call")
    assert (archive["partner"], archive["operation"]) == ("resource", "archive")
    assert archive["payload"] == {"orderId": "O1", "externalOrderId": "E-1"}
    close = one(d.send({"type": "call_result", "call_id": archive["call_id"], "result": {}, "ok": True}), "send_call")
    assert (close["partner"], close["operation"]) == ("esop", "close_report")
    assert close["payload"]["orderId"] == "E-1" and close["payload"]["resultCode"] == "1"
    done = d.send({"type": "call_result", "call_id": close["call_id"], "result": {}, "ok": True})
    assert d.status == "completed" and one(done, "reply")["payload"] == {"order_id": "O1"}
    assert not of_type(done, "send_call")


def test_problems_name_the_file_and_line_that_wrote_them(tmp_path: Path) -> None:
    template = write(tmp_path, "templates/line.yaml", TEMPLATE.replace("operation: activation", "operation: activate"))
    frag = write(tmp_path, "fragments/close.yaml", """\
fragment: close
nodes:
  archive:
    kind: call
    steps: [{partner: resource, operation: archive}]
    next: finished
""")
    bad_expr = CHILD.replace("next: activation}", "next: activation, set: {x: 'data.('}}")
    child = write(tmp_path, "demo/open.yaml", bad_expr + "fragments: [close]\n")
    found = problems(tmp_path)
    why = f"(in blueprint demo-open, {child})"
    assert f"{template}:13: nodes.activation.steps[0]: partner 'ip_workbench' has no operation 'activate' {why}" \
        in found
    assert f"{frag}:6: nodes.archive.next: transition to unknown node 'finished' {why}" in found
    assert any(p.startswith(f"{child}:8: nodes.accept.set.x: syntax error") for p in found), found
    assert f"{frag}:3: nodes.archive: not reachable from start {why}" in found


def test_a_fragment_node_that_clashes_names_both_places(tmp_path: Path) -> None:
    frag = write(tmp_path, "fragments/close.yaml", "fragment: close\nnodes:\n  done: {kind: end}\n")
    child = write(tmp_path, "demo/open.yaml", """\
name: demo-open
start: done
fragments: [close]
nodes:
  done: {kind: end, status: failed}
""")
    assert problems(tmp_path) == [
        f"{frag}:3: nodes.done: node 'done' of fragment 'close' is also defined at {child}:5"]


def test_two_blueprints_for_one_product_and_scenario_or_one_name_are_refused(tmp_path: Path) -> None:
    body = "start: e\nnodes:\n  e: {kind: end}\n"
    first = write(tmp_path, "a/open.yaml", f"name: a-open\nproduct: a\nscenario: open\n{body}")
    second = write(tmp_path, "b/open.yaml", f"name: b-open\nproduct: a\nscenario: open\n{body}")
    third = write(tmp_path, "c/open.yaml", f"name: a-open\n{body}")
    found = problems(tmp_path)
    assert f"{second}:3: scenario: a open is also run by blueprint 'a-open' ({first})" in found
    assert f"{third}:1: name: blueprint 'a-open' is also defined in {first}" in found


@pytest.mark.parametrize(("files", "expected"), [
    ({"x.yaml": "name: x\nextends: nope\nnodes: {}\n"}, "x.yaml:2: extends: unknown template 'nope' (templates: none)"),
    ({"x.yaml": "name: x\nstart: e\nfragments: [nope]\nnodes:\n  e: {kind: end}\n"},
     "x.yaml:3: fragments[0]: unknown fragment 'nope' (fragments: none)"),
    ({"t.yaml": "name: t\ntemplate: true\nextends: u\nnodes: {}\n",
      "u.yaml": "name: u\ntemplate: true\nextends: t\nnodes: {}\n",
      "x.yaml": "name: x\nextends: t\n"}, "extends: templates extend each other in a cycle"),
    ({"t.yaml": TEMPLATE, "x.yaml": CHILD.replace("design: null", "nothing: null")},
     "x.yaml:7: nodes.nothing: null removes a template's node: no 'nothing'"),
    ({"t.yaml": TEMPLATE.replace("kind: user", "kind: usr")}, "t.yaml:8: nodes.design: Value error, unknown node kind"),
    ({"x.yaml": "- just a list\n"}, "x.yaml:1: (document): a flow file is a mapping"),
    ({"x.yaml": "name: x\ndescription: neither stages nor nodes\n"}, "x.yaml:1: (document): not a v2 blueprint"),
    ({"x.yaml": "name: x\nproduct: p\nstart: e\nnodes:\n  e: {kind: end}\n"},
     "x.yaml:2: product: an order flow names both product and scenario"),
])
def test_reuse_mistakes_are_config_errors(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    found = problems(tmp_path)
    assert any(expected in p for p in found), found


def test_a_v1_file_is_refused_not_skipped(tmp_path: Path) -> None:
    write(tmp_path, "old.yaml", "product: x\nscenario: open\nstages:\n  - {name: a, kind: auto}\n")
    with pytest.raises(ConfigError) as err:
        load_library(tmp_path, operations())
    assert any("old.yaml:3: stages: the v1 `stages:` format is no longer run" in p for p in err.value.problems), \
        err.value.problems


def test_the_digest_is_of_the_resolved_blueprint(tmp_path: Path) -> None:
    write(tmp_path, "templates/line.yaml", TEMPLATE)
    write(tmp_path, "demo/open.yaml", CHILD)
    resolved = load_library(tmp_path, operations()).by_name("demo-open")
    inline = write(tmp_path, "../inline/demo.yaml", """\
name: demo-open
description: the standard line flow
product: demo
scenario: open
section: §9.9
start: accept
nodes:
  accept: {kind: auto, next: activation}
  activation: {kind: call, title: 激活, steps: [{partner: ip_workbench, operation: activation}], next: done}
  done: {kind: end, status: completed}
""")
    assert resolved is not None and resolved.digest() == load_blueprint(inline).digest()


def test_the_digest_covers_what_each_kind_adds() -> None:
    """A node's own fields (a call's steps, a user node's rules) are part of the digest: an edit of a
    payload is another version. (The dump once held only the common NodeSpec fields.)"""
    text = (FIXTURES / "p04_1_transmission_open.yaml").read_text(encoding="utf-8")
    edited = text.replace("payload: {order_id: order_id, bandwidth: data.bandwidth}",
                          "payload: {order_id: order_id, bandwidth: data.bandwidth_mbps}")
    assert edited != text
    a = Blueprint.model_validate(_yaml(text))
    b = Blueprint.model_validate(_yaml(edited))
    assert a.digest() != b.digest()
    assert a.model_dump(mode="json")["nodes"]["design_refine"]["steps"][0]["operation"] == "design_request"


def _yaml(text: str) -> object:
    import yaml

    return yaml.safe_load(text)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.yaml")))
def test_a_stored_version_validates_back_to_the_same_digest(name: str) -> None:
    bp = load_blueprint(FIXTURES / f"{name}.yaml")
    doc = json.loads(json.dumps(bp.model_dump(mode="json")))  # as MongoDB gives it back
    again = Blueprint.model_validate(doc)
    assert again.digest() == bp.digest() and again == bp
    assert restore(doc, bp.digest()) == bp


def test_versions_and_restore(tmp_path: Path) -> None:
    write(tmp_path, "templates/line.yaml", TEMPLATE)
    write(tmp_path, "demo/open.yaml", CHILD)
    lib: Library = load_library(tmp_path, operations())
    bp = lib.by_name("demo-open")
    assert bp is not None and lib.by_digest(bp.digest()) is bp and lib.by_digest("0" * 16) is None
    versions = lib.versions()
    assert list(versions) == [bp.digest()]
    assert restore(versions[bp.digest()], bp.digest()) == bp
    tampered = json.loads(json.dumps(versions[bp.digest()]))
    tampered["nodes"]["done"]["status"] = "failed"
    with pytest.raises(ConfigError, match="does not match its digest"):
        restore(tampered, bp.digest())


def test_the_digest_is_the_same_in_another_process() -> None:
    path = FIXTURES / "p06_4_srv6_change.yaml"
    code = ("import sys; from pathlib import Path; from flows.graph.check import load_blueprint; "
            "print(load_blueprint(Path(sys.argv[1])).digest())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.stdout.strip() == load_blueprint(path).digest()
