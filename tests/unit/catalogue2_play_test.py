"""Play a catalogue II blueprint (issue 12) through the pure engine the way the partners and users would.

Why a player: seventy blueprints, each needs a recorded order (tests/fixtures/flows/replay/c2_*.json)
with the partner calls, reports and final state its catalogue row gives. Writing every event by hand
would bury the few things each row is about (a lock, a branch, a report code); the player answers
every call and report as the simulators do — sync answer, "accepted" then callback, "accepted" then
poll timer and query — and submits each manual stage with the fields the scenario script gives (the
demo field app's samples otherwise), so a script names only what matters for its row. A sub-flow (P14
construction) is played as its own order by a player of its blueprint, then finished in the parent
with the child's data, as flows/runtime/relay.py hands it back.

A recording stores the steps (event → commands, replayed by catalogue2_replay_test) and its
expectations: the partner calls in order, the report codes per partner, the final status.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.graph import Blueprint
from flows.graph.check import partner_operations
from flows.graph.library import load_library
from hub.partners import load_partners
from hub.settings import PROJECT_ROOT
from simulators.fieldapp import sample_fields
from simulators.spec import load_sims
from tests.unit.flows_graph_harness import FIXTURES, Driver, of_type

CONFIG = PROJECT_ROOT / "config"
REPLAYS = FIXTURES / "replay"
SUBMITTER = {"id": "operator:wang.fang", "team": "省集中调度中心班组"}
_LIBRARY: Any = None


def library() -> Any:
    """The shipped library as the worker loads it (partner operations checked), loaded once."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = load_library(CONFIG, partner_operations(load_partners(CONFIG)))
    return _LIBRARY


def blueprint(name: str) -> Blueprint:
    bp = library().by_name(name)
    assert bp is not None, f"no blueprint {name!r}"
    return bp


def order(product: str, scenario: str, external_id: str = "G-1", **extensions: Any) -> dict[str, Any]:
    """A canonical order (hub/order.py WorkOrder) as intake hands it to the engine."""
    return {"external_order_id": external_id, "product": product, "scenario": scenario,
            "customer": {"name": "测试客户"}, "addresses": [{"city": "杭州", "detail": "文一西路 1 号"}],
            "bandwidth_mbps": 100, "extensions": dict(extensions)}


#: the partners' own success answers (their error fields: RC msg, CW message, CAM resultDesc, G parameterValue)
DEFAULT_RESULTS: dict[str, dict[str, Any]] = {
    "resource": {"code": "0", "msg": "成功", "resultCode": "0"},
    "core_workbench": {"code": "0", "message": "成功"},
    "cam": {"code": "0", "resultDesc": "激活成功"},
    "fieldapp": {"code": "0", "msg": "处理完成"},
    "group": {"parameterValue": "success"},
    "esop": {"checkResult": 1, "parameterValue": "success"},
}
#: the field each partner's success rule names as its error text (config/partners, G3)
ERROR_FIELDS = {"resource": "msg", "core_workbench": "message", "cam": "resultDesc", "fieldapp": "msg",
                "jgj": "message", "group": "parameterValue", "esop": "parameterValue", "eoms": "message",
                "ip_workbench": "message", "transmission_workbench": "message", "cm2_platform": "message", "ldp": "msg"}
FAILURE = {"code": "1", "msg": "模拟失败", "message": "模拟失败", "resultDesc": "模拟失败", "checkResult": 0,
           "parameterValue": "模拟失败"}


@dataclass
class Script:
    """One recorded order: which blueprint, the order, and what the people and partners answer.

    ``submissions``: node → the successive submissions of that stage, each over the field app's
    samples (a ``None`` value leaves the field out; only samples when none is left); ``results``:
    ``partner.operation`` → result merged over the partner's default; ``reject_calls`` /
    ``reject_reports``: ``partner.operation`` / ``partner.code`` answered with a failure once each (a
    retry event follows for a gated report, G2).
    """

    name: str
    blueprint: str
    data: dict[str, Any]
    submissions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    reject_calls: list[str] = field(default_factory=list)
    reject_reports: list[str] = field(default_factory=list)


class Player:
    def __init__(self, script: Script, order_id: str = "O1") -> None:
        self.s = script
        self.order_id = order_id
        self.children: list[dict[str, Any]] = []  # the sub-flows played: child_id, blueprint, driver
        self.bp = blueprint(script.blueprint)
        self.d = Driver(self.bp)
        self.subs = {k: list(v) for k, v in script.submissions.items()}
        self.reject_calls = list(script.reject_calls)
        self.reject_reports = list(script.reject_reports)
        self.refused: list[dict[str, Any]] = []   # submissions answered with errors (G4)
        self.also: dict[str, set[str]] = {}      # node → fields its samples must fill after a refusal

    # ---- partners ------------------------------------------------------------------------------
    def _result(self, c: dict[str, Any]) -> dict[str, Any]:
        key = f"{c['partner']}.{c['operation']}"
        return {**DEFAULT_RESULTS.get(c["partner"], {"code": "0"}), **self.s.results.get(key, {})}

    def _token_of(self, call_id: str) -> dict[str, Any] | None:
        assert self.d.state is not None
        for t in self.d.state["tokens"].values():
            if (t.get("wait") or {}).get("call_id") == call_id:
                return dict(t)
        return None

    def _answer(self, commands: list[dict[str, Any]]) -> None:
        queue = list(commands)
        while queue and self.d.status == "running":
            c = queue.pop(0)
            if c["type"] == "send_report" and c["gate"]:
                code = c["payload"].get("progress_code") or c["payload"].get("desc_outline", "")
                key = f"{c['partner']}.{code}"
                ok = key not in self.reject_reports
                if not ok:
                    self.reject_reports.remove(key)
                queue += self.d.send({"type": "report_result", "report_id": c["report_id"], "ok": ok,
                                      **({} if ok else {"error": "模拟失败"})}, after=1)
                if not ok:
                    queue += self.d.send({"type": "retry", "node": c["node"]}, after=60)
            elif c["type"] == "send_call" and c["purpose"] == "call":
                queue += self._call(c)
            elif c["type"] == "send_call" and c["purpose"] == "poll":
                target = c["payload"]["call_id"]
                queue += self.d.send({"type": "call_result", "call_id": target, "via": "poll",
                                      "result": self._result(c)}, after=1)
            elif c["type"] == "start_timer" and c["purpose"] == "poll":
                queue += self.d.send({"type": "timer_fired", "timer_id": c["timer_id"]}, after=10)
            elif c["type"] == "start_subflow":
                queue += self._subflow(c)

    def _subflow(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        """The child order (its input as its data) played to its end with this script's answers and
        rejections (shared: a refused construction dispatch is refused once in all), then its document
        handed back — the runtime's notify_parent → ``subflow.finished`` with the child's data."""
        child = Player(Script(f"{self.s.name}/{c['child_id']}", c["blueprint"], dict(c.get("input") or {}),
                              results=self.s.results), order_id=c["child_id"])
        child.reject_calls = self.reject_calls
        d = child.run()
        self.children.append({"child_id": c["child_id"], "blueprint": c["blueprint"], "driver": d})
        assert d.state is not None
        return self.d.send({"type": "subflow_finished", "child_id": c["child_id"], "status": d.status,
                            "data": d.state["data"]}, after=3600)

    def _call(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        key = f"{c['partner']}.{c['operation']}"
        ok = key not in self.reject_calls
        if not ok:
            self.reject_calls.remove(key)
        result = self._result(c) if ok else dict(FAILURE)
        token = self._token_of(c["call_id"])
        mode = "sync"
        if token is not None:
            mode = self.bp.nodes[token["node"]].steps[token["wait"]["step"]].mode  # type: ignore[attr-defined]
        if mode == "sync":  # as flows/runtime/translate.py hands a REST answer on: {http_status, body}
            status = (201 if c["partner"] == "group" else 200) if ok else 400
            answer: dict[str, Any] = {"http_status": status, "body": result, "ok": ok}
            if not ok:
                answer["error"] = result.get(ERROR_FIELDS.get(c["partner"], "msg"))
            return self.d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok, "result": answer,
                                "via": "sync"}, after=1)
        accepted = self.d.send({"type": "call_result", "call_id": c["call_id"], "pending": True, "via": "sync"},
                               after=1)
        if mode == "poll" and ok:
            return accepted  # the poll timer in `accepted` drives the result query
        for _ in range(_interim_stages().get(key, 0) if ok else 0):  # a staged partner's 阶段回复 first
            accepted += self.d.send({"type": "call_result", "call_id": c["call_id"], "pending": True,
                                     "via": "callback"}, after=10)
        return accepted + self.d.send({"type": "call_result", "call_id": c["call_id"], "ok": ok,
                                       "result": {**result, "ok": ok}, "via": "callback"}, after=30)

    # ---- people --------------------------------------------------------------------------------
    def run(self, limit: int = 200) -> Driver:
        self._answer(self.d.send({"type": "order_received", "order_id": self.order_id, "data": dict(self.s.data)}))
        for _ in range(limit):
            if self.d.status != "running":
                return self.d
            waiting = [t for t in self.d.state["tokens"].values()  # type: ignore[index]
                       if "submission" in (t.get("wait") or {})]
            assert waiting, f"{self.s.name}: stuck at {self.d.nodes()}"
            node = sorted(t["node"] for t in waiting)[0]
            queue = self.subs.get(node) or []
            fields = sample_fields(list(getattr(self.bp.nodes[node], "fields", [])), self.also.get(node))
            if queue:  # the script's fields over the samples; None leaves a field out
                fields = {k: v for k, v in {**fields, **queue.pop(0)}.items() if v is not None}
            cmds = self.d.send({"type": "submission", "node": node, "fields": fields, "user": SUBMITTER}, after=600)
            errors = [c for c in cmds if c["type"] == "reply" and c.get("errors")]
            if errors:
                self.refused.append({"node": node, "fields": fields, "errors": errors[0]["errors"]})
                if not (queue or self.subs.get(node)):  # as the demo's field app: fill what was required after all
                    names = {e["field"] for e in errors[0]["errors"] if e["message"] == "required"}
                    assert names - self.also.get(node, set()), f"{self.s.name}: {node} refused {errors}"
                    self.also[node] = self.also.get(node, set()) | names
            self._answer(cmds)
        raise AssertionError(f"{self.s.name}: still running after {limit} submissions at {self.d.nodes()}")


@functools.cache
def _interim_stages() -> dict[str, int]:
    """partner.operation → interim callbacks before the result, as its simulator replies in stages
    (simulators/partners/*.yaml ``reply: staged``, e.g. the construction platform's 阶段回复); each is
    ``pending`` via callback to the engine (flows/runtime/translate.py), as in catalogue1_world."""
    return {f"{name}.{op_name}": len(op.stages) - 1 for name, sim in load_sims().items()
            for op_name, op in sim.operations.items() if op.reply == "staged"}


# ---- what a recording shows ---------------------------------------------------------------------
def calls_made(steps: list[dict[str, Any]]) -> list[str]:
    return [f"{c['partner']}.{c['operation']}" + (f"[{c['payload']['object']}:{c['payload']['action']}]"
                                                  if "object" in c["payload"] else "")
            + (f"[{c['payload']['task']}]" if "task" in c["payload"] else "")
            for s in steps for c in of_type(s["commands"], "send_call") if c["purpose"] == "call"]


def reports_sent(steps: list[dict[str, Any]]) -> list[str]:
    """Every report as ``partner.operation:code`` (G6 stage reports: ``stage/descOutline``)."""
    out = []
    for s in steps:
        for c in of_type(s["commands"], "send_report"):
            p = c["payload"]
            code = p.get("progress_code") or (f"{p.get('stage', '')}/{p.get('desc_outline', '')}"
                                              if "desc_outline" in p else p.get("stage_title", ""))
            out.append(f"{c['partner']}.{c['operation']}:{code}")
    return out


def expectations(d: Driver) -> dict[str, Any]:
    return {"calls": calls_made(d.steps), "reports": reports_sent(d.steps), "status": d.status}


def record(path: Path, script: Script) -> dict[str, Any]:
    """Play ``script`` and write its recording (run by hand when a change is meant)."""
    d = Player(script).run()
    steps = [{"at": s["at"], "event": s["event"], "commands": s["commands"]} for s in d.steps]
    doc = {"blueprint": script.blueprint, "script": script.name, "expect": expectations(d), "steps": steps}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return doc
