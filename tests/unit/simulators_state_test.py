"""The simulators' call counts and duplicate list, which tests and benchmarks assert "no partner saw a
call twice" on, are kept as calls arrive: they must still say exactly what the call log says."""

from __future__ import annotations

from simulators.state import Answer, SimulatorState

OK = Answer(200, b"{}", "application/json")


def test_counts_follow_the_call_log_and_reset_clears_them() -> None:
    state = SimulatorState({})
    for partner, op in [("resource", "reserve"), ("resource", "reserve"), ("resource", "query"), ("esop", "report")]:
        state.record(partner, op, None, {}, "ok")
    assert state.counts() == {"resource": {"reserve": 2, "query": 1}, "esop": {"report": 1}}
    recount: dict[str, dict[str, int]] = {}
    for name, st in state.partners.items():
        for c in st.calls:
            recount.setdefault(name, {}).setdefault(c.operation, 0)
            recount[name][c.operation] += 1
    assert state.counts() == recount
    state.reset()
    assert state.counts() == {} and state.duplicates() == {}


def test_a_key_is_a_duplicate_once_it_was_accepted_and_sent_again() -> None:
    state = SimulatorState({})
    assert state.repeated("resource", "k1") is None  # refused or new: not a duplicate
    state.accept("resource", "k1", OK)
    state.accept("resource", "k2", OK)
    assert state.duplicates() == {}
    assert state.repeated("resource", "k1") == OK
    assert state.repeated("resource", "k1") == OK
    assert state.duplicates() == {"resource": {"k1": 3}}
    state.accept("resource", "k1", OK)  # accepted afresh (as after a reset of that key): one request again
    assert state.duplicates() == {}
