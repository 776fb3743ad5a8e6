"""Scheduled jobs in configuration: one YAML file per job under ``config/jobs/``.

Why files and not code: when a report runs, how a missed run is handled and what it is given are
operations decisions (C.5, D.2.7 give no run times), changed without a release. Loaded like the
blueprints: a bad file is refused with ``file:line: key`` (hub/configfile.py), and an unknown
``kind`` or a cron expression croniter cannot read is a problem of that file, not a crash later.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.configfile import line_of, load_model, read_yaml
from hub.errors import ConfigError

NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class JobConfig(BaseModel):
    """One scheduled job: what runs (``kind`` + ``params``), when (``schedule``), and what happens
    to runs the hub missed while no worker was up (``missed``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, examples=["group-daily-files"])
    description: str = ""
    kind: str = Field(description="a registered job kind (app/jobs/registry.py)", examples=["report_file"])
    schedule: str = Field(description="cron expression (5 fields, croniter), in `timezone`",
                          examples=["10 0 * * *", "*/5 * * * *"])
    timezone: str = Field(default="Asia/Shanghai", description="the schedule's and the report day's zone")
    missed: Literal["catch_up", "skip"] = Field(
        default="catch_up",
        description="catch_up: every slot missed while no worker ran is run, oldest first (at most "
                    "max_catch_up; older ones are recorded as skipped); skip: a slot older than "
                    "misfire_grace_s that never started is recorded as skipped, only on-time slots run")
    max_catch_up: int = Field(default=7, ge=1, le=1000)
    misfire_grace_s: float = Field(default=300.0, ge=0)
    lease_s: float = Field(default=60.0, gt=0, le=86_400,
                           description="how long a run's lease holds without a heartbeat (renewed every lease_s/3)")
    max_attempts: int = Field(default=3, ge=1, le=100, description="tries of one slot before it is recorded failed")
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict, description="given to the job kind as they are")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def slots(self, after: datetime, until: datetime) -> list[datetime]:
        """The schedule's times in ``(after, until]``, oldest first, in the job's zone."""
        it = croniter(self.schedule, after.astimezone(self.zone()))
        out: list[datetime] = []
        while True:
            nxt = it.get_next(datetime)
            if nxt > until:
                return out
            out.append(nxt)
            if len(out) > 10_000:  # a '* * * * *' job down for a week: never plan more than this
                return out[-10_000:]

    def next_slot(self, at: datetime) -> datetime:
        return croniter(self.schedule, at.astimezone(self.zone())).get_next(datetime)

    def previous_slot(self, at: datetime) -> datetime:
        return croniter(self.schedule, at.astimezone(self.zone())).get_prev(datetime)


def load_jobs(config_dir: Path, known_kinds: set[str] | None = None) -> dict[str, JobConfig]:
    """Every ``config/jobs/*.yaml``; names unique, kinds registered (problems name file and line)."""
    jobs: dict[str, JobConfig] = {}
    problems: list[str] = []
    loaded: dict[Path, JobConfig] = {}
    for path in sorted((config_dir / "jobs").glob("*.yaml")):
        try:
            loaded[path] = load_model(path, JobConfig)
        except ConfigError as exc:  # every bad file at once, not just the first
            problems.extend(exc.problems or [str(exc)])
    for path, job in loaded.items():
        if known_kinds is not None and job.kind not in known_kinds:
            problems.append(f"{path}:{_line(read_yaml(path)[1], 'kind')}: kind: unknown job kind {job.kind!r} "
                            f"(known: {', '.join(sorted(known_kinds))})")
        if job.name in jobs:
            problems.append(f"{path}:{_line(read_yaml(path)[1], 'name')}: name: job {job.name!r} defined twice")
        jobs[job.name] = job
    if problems:
        raise ConfigError(f"invalid configuration under {config_dir / 'jobs'}", problems)
    return jobs


def _line(node: Any, key: str) -> int:
    return line_of(node, (key,)) or 1
