"""The order's SLA clock (G7 "the SLA timer starts on receipt"), driven by the pure engine.

Why its own timer and not a node timeout: a node's ``timeout`` measures one stage and is gone when the
token leaves it; G7's clock measures the whole order from receipt, across every stage, loop and
parallel branch. So it belongs to the order, not to a token: ``state["sla"]`` keeps it —

``{"started_at", "after_s", "deadline", "due_soon_at", "timer_id", "fired_at"?, "remaining"?,
"stopped_at"?}``

It is one durable timer like the others (``start_timer`` purpose ``sla``: the runtime stores and sweeps
it with the order), paused by a suspend (``remaining`` kept, ``timer_id`` None; resume restarts it under
a new id and moves ``deadline`` and ``due_soon_at`` by the hold), stopped when the order ends, and when
it fires the blueprint's ``sla.escalate`` notices go out; the order itself goes on. The deadline stays
in the state after it fired, which is how the order document keeps showing the order as overdue
(flows/runtime/document.py ``project``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flows.graph import commands as cmd
from flows.graph.expr import compile_mapping, evaluate_mapping

if TYPE_CHECKING:
    from flows.graph.machine import Run

__all__ = ["fire", "pause", "restart", "start", "stop"]

PURPOSE = "sla"


def start(run: Run) -> None:
    """On receipt: the clock starts now (before the first node, so its id is the order's first)."""
    spec = run.bp.sla
    if spec is None:
        return
    after = spec.seconds
    timer_id = run.new_id(PURPOSE)
    run.state["sla"] = {"started_at": run.now, "after_s": after, "deadline": run.now + after,
                        "due_soon_at": run.now + spec.due_soon_share * after, "timer_id": timer_id}
    run.emit(cmd.timer(timer_id, run.now + after, purpose=PURPOSE, node=run.bp.start))


def fire(run: Run, event: dict[str, Any]) -> bool:
    """A ``timer_fired`` of the running SLA timer: send the escalations (the order goes on). True when
    the event was the SLA's."""
    sla = run.state.get("sla")
    if not sla or not sla.get("timer_id") or event.get("timer_id") != sla["timer_id"]:
        return False
    spec = run.bp.sla
    assert spec is not None
    run.state["sla"] = {**sla, "timer_id": None, "fired_at": run.now}
    tokens = sorted(run.state["tokens"].values(), key=lambda t: t["id"])
    node = tokens[0]["node"] if tokens else run.bp.start  # where the order is as it runs out
    for esc in spec.escalate:
        payload = evaluate_mapping(compile_mapping(esc.payload), run.scope())
        run.emit(cmd.report(run.new_id("report"), esc.partner, esc.operation, payload, node=node,
                            on="escalate", gate=False))
    run.changed = True
    return True


def pause(run: Run) -> None:
    """Suspend: the running clock is cancelled and its remaining time kept (an SLA does not run out
    while an operator holds the order). A clock that already fired has nothing to pause."""
    sla = run.state.get("sla")
    if not sla or not sla.get("timer_id"):
        return
    run.emit({"type": "cancel_timer", "timer_id": sla["timer_id"]})
    run.state["sla"] = {**sla, "timer_id": None, "remaining": max(0.0, sla["deadline"] - run.now)}


def restart(run: Run, held_since: float) -> None:
    """Resume: the clock goes on with what was left, under a new id (a stale firing matches nothing);
    the deadline and the due-soon mark move by the length of the hold."""
    sla = run.state.get("sla")
    if not sla or "remaining" not in sla:
        return
    timer_id = run.new_id(PURPOSE)
    held = run.now - held_since
    rest = {k: v for k, v in sla.items() if k != "remaining"}
    run.state["sla"] = {**rest, "timer_id": timer_id, "deadline": run.now + sla["remaining"],
                        "due_soon_at": sla["due_soon_at"] + held}
    run.emit(cmd.timer(timer_id, run.now + sla["remaining"], purpose=PURPOSE, node=run.bp.start))


def stop(run: Run) -> None:
    """The order ended: the clock stops (its timer cancelled if it still runs; a paused one was
    cancelled at the suspend); ``met``: it ended before the SLA ran out."""
    sla = run.state.get("sla")
    if not sla or "stopped_at" in sla:
        return
    if sla.get("timer_id"):
        run.emit({"type": "cancel_timer", "timer_id": sla["timer_id"]})
    run.state["sla"] = {**sla, "timer_id": None, "stopped_at": run.now, "met": "fired_at" not in sla}
