"""``hub flows list|show|check|diff|schema`` on the v2 library. The tests read tests/fixtures/flows
(``--dir``) or their own files, with the shipped partners plus the activation module (CAM) the
fixtures call, so they do not depend on what config/flows holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from app.cli.flows import flows_app
from flows.graph.check import load_blueprint
from flows.graph.schema import flows_schema
from tests.unit.flows_graph_harness import CAM_OPERATIONS, FIXTURES
from tests.unit.flows_library_test import CHILD, TEMPLATE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A configuration folder: the shipped partners, CAM, and an empty flows/."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config" / "partners", config / "partners")
    ops = ", ".join(f"{op}: {{path: /{op}}}" for op in sorted(CAM_OPERATIONS))
    (config / "partners" / "cam.yaml").write_text(
        "name: cam\noutbound:\n  protocol: rest\n  config:\n    base_url: http://127.0.0.1:9/cam\n"
        f"    operations: {{{ops}}}\n", encoding="utf-8")
    (config / "flows").mkdir()
    return config


def run(*args: str) -> Result:
    return CliRunner().invoke(flows_app, list(args))


def flows(cfg: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = cfg / "flows" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_list_shows_every_blueprint_of_the_fixtures(cfg: Path) -> None:
    res = run("list", "--config", str(cfg), "--dir", str(FIXTURES))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PRODUCT", "SCENARIO", "CATALOGUE", "SOURCE", "SECTION", "NODES", "FILE"]
    for path in FIXTURES.glob("*.yaml"):
        bp = load_blueprint(path)
        row = next(line.split() for line in lines if line.startswith(bp.name + " "))
        assert row[-2:] == [str(len(bp.nodes)), str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd())
                                                     else path)]


def test_list_names_product_scenario_catalogue_source_section_templates_and_fragments(cfg: Path) -> None:
    flows(cfg, {"templates/line.yaml": TEMPLATE,
                "demo/open.yaml": CHILD + "catalogue: P99.1\nsource: inferred\nsource_note: the documents are silent\n",
                "fragments/close.yaml": "fragment: close\nnodes:\n  x: {kind: end}\n"})
    res = run("list", "--config", str(cfg))
    assert res.exit_code == 0, res.output
    row = res.stdout.splitlines()[1].split()
    assert row[:7] == ["demo-open", "demo", "open", "P99.1", "inferred", "§9.9", "3"]
    assert f"templates: line-standard ({cfg / 'flows' / 'templates' / 'line.yaml'})" in res.stdout
    assert f"fragments: close ({cfg / 'flows' / 'fragments' / 'close.yaml'})" in res.stdout


def test_show_goes_node_by_node(cfg: Path) -> None:
    res = run("show", "p04-1-transmission-open", "--config", str(cfg), "--dir", str(FIXTURES))
    assert res.exit_code == 0, res.output
    out = res.stdout
    for expected in ("design_refine [call] 方案细化",
                     "    call 1: resource.design_request (callback)  ok: result.code == '0'",
                     "    timeout 1d → failed", "    → construction when !data.resources_ok",
                     "    → network_change  (otherwise)", "construction [subflow] 工程施工",
                     "    blueprint: p14-construction", "    compensate on cancel: resource.config_plan",
                     "    fields: test_ok (bool, required)", "    timeout 2h escalate esop.progress_report",
                     "    → verification when !data.test_ok", "done [end]", "    reply audits = data.audits"):
        assert expected in out.splitlines(), (expected, out)
    assert "digest " + load_blueprint(FIXTURES / "p04_1_transmission_open.yaml").digest() in out
    poll = run("show", "p06-4-srv6-change", "--config", str(cfg), "--dir", str(FIXTURES)).stdout
    assert "    report at enter: group.progress_report  (gated)" in poll.splitlines()
    assert any("cam.gpon_activate (poll, query result_query every" in line for line in poll.splitlines()), poll


def test_show_by_product_and_scenario_and_an_unknown_one(cfg: Path) -> None:
    flows(cfg, {"templates/line.yaml": TEMPLATE, "demo/open.yaml": CHILD})
    res = run("show", "demo", "open", "--config", str(cfg))
    assert res.exit_code == 0 and res.stdout.startswith("demo-open — "), res.output
    assert "  built from: extends line-standard" in res.stdout.splitlines()
    missing = run("show", "demo", "close", "--config", str(cfg))
    assert missing.exit_code == 1 and "no blueprint demo close (known: demo-open (demo open))" in missing.stderr


def test_check_passes_the_fixtures_and_fails_with_file_line_messages(cfg: Path) -> None:
    ok = run("check", "--config", str(cfg), "--dir", str(FIXTURES))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"{len(list(FIXTURES.rglob('*.yaml')))} blueprint(s) OK")
    flows(cfg, {"demo/open.yaml": CHILD.replace("extends: line-standard\n", "") + "start: accept\n"})
    bad = run("check", "--config", str(cfg))
    path = cfg / "flows" / "demo" / "open.yaml"
    assert bad.exit_code == 2
    assert bad.stderr.splitlines()[1:] == [
        f"  - {path}:6: nodes.design: null removes a template's node: no 'design'",
        f"  - {path}:7: nodes.accept.next: transition to unknown node 'activation'"]


def test_diff_lists_nodes_added_removed_and_changed_with_their_fields(cfg: Path, tmp_path: Path) -> None:
    flows(cfg, {"templates/line.yaml": TEMPLATE, "demo/open.yaml": CHILD})
    edited = tmp_path / "open-edited.yaml"
    edited.write_text(CHILD.replace("next: activation}", "next: audit}\n  audit: {kind: auto, next: activation}")
                      + "  activation: {kind: call, steps: [{partner: ip_workbench, operation: activation, "
                        "mode: callback}], next: done}\n" + "description: edited\n", encoding="utf-8")
    res = run("diff", "demo-open", str(edited), "--config", str(cfg))
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert lines[2:] == ['~ description: "the standard line flow" → "edited"',
                         "+ node audit [auto]", "~ node accept [auto]: next", "~ node activation [call]: steps, title",
                         "1 node(s) added, 0 removed, 2 changed"]
    back = run("diff", str(edited), "demo-open", "--config", str(cfg))
    assert "- node audit [auto]" in back.stdout.splitlines()


def test_diff_of_one_version_is_identical_and_exits_0(cfg: Path) -> None:
    flows(cfg, {"templates/line.yaml": TEMPLATE, "demo/open.yaml": CHILD})
    path = cfg / "flows" / "demo" / "open.yaml"
    listed = run("show", "demo-open", "--config", str(cfg)).stdout
    digest = listed.split("digest ")[1].split()[0]
    for a, b in ((str(path), "demo-open"), ("demo-open", f"demo-open@{digest[:8]}")):
        res = run("diff", a, b, "--config", str(cfg))
        assert res.exit_code == 0, res.output
        assert res.stdout.splitlines()[-1] == "identical"


def test_diff_of_something_that_is_not_there_exits_2(cfg: Path) -> None:
    flows(cfg, {"templates/line.yaml": TEMPLATE, "demo/open.yaml": CHILD})
    res = run("diff", "demo-open", "nothing", "--config", str(cfg))
    assert res.exit_code == 2 and "no blueprint 'nothing' and no such file (blueprints: demo-open)" in res.stderr


def test_schema_command_writes_the_generated_schema(tmp_path: Path) -> None:
    out = tmp_path / "flows-schema.json"
    res = run("schema", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(flows_schema()))
    assert json.loads(run("schema").stdout)["title"] == "hub flow blueprint"


def test_diff_of_a_version_not_in_the_files_when_mongodb_is_down_exits_2(cfg: Path) -> None:
    from tests.conftest import free_port

    flows(cfg, {"templates/line.yaml": TEMPLATE, "demo/open.yaml": CHILD})
    env = {"HUB_MONGO_URL": f"mongodb://127.0.0.1:{free_port()}", "HUB_MONGO_TIMEOUT_MS": "200"}
    res = CliRunner().invoke(flows_app, ["diff", "demo-open@0123456789abcdef", "demo-open", "--config", str(cfg)],
                             env=env)
    assert res.exit_code == 2, res.output
    assert "version 0123456789abcdef of 'demo-open' is not the current file, and MongoDB" in res.stderr


def test_diff_refuses_a_template_or_a_v1_file(cfg: Path, tmp_path: Path) -> None:
    flows(cfg, {"templates/line.yaml": TEMPLATE, "demo/open.yaml": CHILD})
    v1 = tmp_path / "v1.yaml"
    v1.write_text("product: x\nscenario: open\nstages: []\n", encoding="utf-8")
    for path, why in ((cfg / "flows" / "templates" / "line.yaml", "a template is not run itself"),
                      (v1, "the v1 `stages:` format is no longer run")):
        res = run("diff", str(path), "demo-open", "--config", str(cfg))
        assert res.exit_code == 2 and why in res.stderr, res.output
