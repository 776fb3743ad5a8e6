"""bench/soak.py's pure parts: the fault schedule and the verdicts computed from the samples.

The soak itself runs for 30 minutes against real servers (docs/deploy.md "Soak"); what it concludes
from its samples is checked here, on made-up series: a flat run passes, a leak, a growing task count,
a lost or doubled order fail it."""

from __future__ import annotations

import pytest

from bench.soak import Fault, Sample, control_for, fault_at, fault_schedule, growing, lost_doubled, verdicts


def _samples(n: int = 30, *, worker: float = 180.0, worker_step: float = 0.0, tasks: int = 200,
             tasks_step: int = 0, broker_step: float = 1.0) -> list[Sample]:
    out = [Sample(0.0, 0, 0, 0.0, None, {"worker": 170.0, "broker": 20.0}, 150, 10, 30, 0, phase="start")]
    for i in range(1, n + 1):
        out.append(Sample(i * 10.0, i * 40, 40, 4.0, 900.0,
                          {"worker": worker + worker_step * i, "broker": 20.0 + broker_step * i},
                          tasks + tasks_step * i, 60, 80, 0, fault="down@resource" if i % 6 == 0 else None))
    out.append(Sample((n + 1) * 10.0, n * 40, 0, 0.0, None, {"worker": worker + worker_step * n, "broker": 50.0},
                      150 + tasks_step * n, 10, 30, 0, phase="end"))
    return out


def _by_name(checks: list) -> dict:
    return {v.name: v for v in checks}


def test_schedule_rotates_kinds_and_partners_and_ends_before_the_run() -> None:
    faults = fault_schedule(1800, 180, 60)
    assert len(faults) == 9  # at 180 … 1620 s; one at 1800 would end after the run
    assert [f.kind for f in faults[:5]] == ["down", "slow", "errors", "rejects", "duplicate_callback"]
    assert all(f.end_s - f.start_s == 60 and f.end_s <= 1800 for f in faults)
    assert faults[0].start_s == 180  # a normal start first
    assert {f.partner for f in faults if f.kind == "duplicate_callback"} <= {"resource", "ip_workbench"}
    assert len({f.partner for f in faults}) == 3
    assert fault_at(faults, 200) == faults[0] and fault_at(faults, 250) is None


def test_schedule_and_controls_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        fault_schedule(600, 60, 60)  # a fault as long as the gap: never back to normal
    with pytest.raises(ValueError):
        control_for("meteor")
    assert control_for("errors") == {"mode": "http_error"}
    assert control_for("slow")["delay_s"] < 10  # under the partners' timeout: slow, not sent twice


def test_a_flat_run_passes() -> None:
    checks = verdicts(_samples(), warmup_s=30, flat=("worker",))
    assert all(v.ok for v in checks if v.counted), [v for v in checks if not v.ok]
    byname = _by_name(checks)
    assert "180 → 180 MB" in byname["RSS worker"].detail
    assert not byname["RSS broker"].counted and not byname["RSS broker"].ok  # grew, shown, not held
    assert "MB per 1,000 orders" in byname["RSS broker"].detail


def test_a_leaking_worker_fails() -> None:
    checks = _by_name(verdicts(_samples(worker_step=1.5), warmup_s=30, flat=("worker",)))
    assert not checks["RSS worker"].ok and checks["RSS worker"].counted


def test_growing_tasks_fail_by_thirds_and_idle() -> None:
    checks = _by_name(verdicts(_samples(tasks_step=10), warmup_s=30, flat=("worker",)))
    assert not checks["tasks not growing"].ok
    assert not checks["tasks idle before/after"].ok
    assert checks["connections not growing"].ok


def test_lost_unfinished_and_doubled_fail() -> None:
    checks = _by_name(verdicts(_samples(), warmup_s=30, flat=("worker",), lost=1, doubled=2, unfinished=3))
    assert not checks["lost"].ok and not checks["doubled"].ok and not checks["unfinished after the drains"].ok


def test_lost_is_no_document_or_no_close_report_unfinished_is_still_open() -> None:
    check = {"posted": 10, "orders_in_db": 9, "orders_completed_in_db": 7, "closed_once": 6, "closed_twice": 0,
             "order_docs_twice": 0, "keys_sent_again": {"esop": 1}}
    assert lost_doubled(check) == (1 + 1, 2, 1)


def test_no_samples_after_the_warmup_fails() -> None:
    assert not verdicts(_samples(3), warmup_s=600, flat=("worker",))[0].ok


def test_growing_compares_thirds_with_slack() -> None:
    assert growing([100, 100, 100, 120, 130, 140])[0]
    assert not growing([100, 100, 100, 105, 104, 106])[0]
    assert not growing([100, 100, 100, 115, 115, 115], slack=10)[0]
    assert not growing([1.0, 2.0])[0]


def test_fault_label() -> None:
    assert Fault(0, 1, "down", "esop").label == "down@esop"
