"""Job files (app/jobs/config.py): the shipped ones load, a bad one is refused with file:line: key,
and the schedule arithmetic the missed-run policies rely on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.jobs.config import JobConfig, load_jobs
from app.jobs.registry import kinds
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_jobs_load_with_registered_kinds() -> None:
    jobs = load_jobs(ROOT / "config", set(kinds()))
    assert {"group-daily-files", "group-monthly-files", "release-reservations", "daily-audit",
            "refund-retry"} <= set(jobs)


def write(tmp: Path, name: str, text: str) -> Path:
    (tmp / "jobs").mkdir(exist_ok=True)
    path = tmp / "jobs" / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_bad_job_file_names_file_line_and_key(tmp_path: Path) -> None:
    bad = write(tmp_path, "a.yaml", "name: a\nkind: report_file\nschedule: \"61 * * * *\"\n")
    write(tmp_path, "b.yaml", "name: b\nkind: nope\nschedule: \"0 * * * *\"\n")
    write(tmp_path, "c.yaml", "name: b\nkind: report_file\nschedule: \"0 * * * *\"\ntimezone: Mars/Olympus\n")
    with pytest.raises(ConfigError) as exc:
        load_jobs(tmp_path, set(kinds()))
    text = "\n".join(exc.value.problems)
    assert f"{bad}:3: schedule" in text and "not a cron expression" in text
    assert "c.yaml:4: timezone" in text and "unknown time zone" in text
    assert "b.yaml:2: kind: unknown job kind 'nope'" in text


def test_slots_are_the_schedule_times_in_the_jobs_zone() -> None:
    job = JobConfig(name="d", kind="report_file", schedule="10 1 * * *", timezone="Asia/Shanghai")
    after = datetime(2026, 4, 9, 17, 0, tzinfo=UTC)  # 01:00 China time on the 10th
    slots = job.slots(after, datetime(2026, 4, 11, 18, 0, tzinfo=UTC))
    assert [s.isoformat() for s in slots] == ["2026-04-10T01:10:00+08:00", "2026-04-11T01:10:00+08:00",
                                              "2026-04-12T01:10:00+08:00"]
    assert job.previous_slot(after).isoformat() == "2026-04-09T01:10:00+08:00"
