"""Timer triggers for the dev host: each `timerTrigger` function runs on its NCRONTAB schedule (six fields,
seconds first: `{second} {minute} {hour} {day} {month} {day-of-week}`), as the Functions host runs it — Microsoft
Learn, "Timer trigger for Azure Functions" (NCRONTAB expressions). `%SETTING%` schedules are read from the app
settings; one invocation at a time per function (a tick that comes while the last one runs is skipped, as the
host's singleton lock does)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func

from local.host.functions import disabled, handler_name
from local.host.invoke import invoke

log = logging.getLogger("local.host")
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


class ScheduleError(ValueError):
    pass


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(x) for x in body.split("-", 1))
        else:
            start = end = int(body)
        if step < 1 or start < low or end > high or start > end:
            raise ScheduleError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    fields: tuple[frozenset[int], ...]

    @classmethod
    def parse(cls, text: str) -> Schedule:
        parts = text.split()
        if len(parts) != 6 or not all(re.fullmatch(r"[\d*,/-]+", p) for p in parts):
            raise ScheduleError(f"{text!r} is not a six-field NCRONTAB expression")
        return cls(tuple(_field(p, low, high) for p, (low, high) in zip(parts, _RANGES, strict=True)))

    def matches(self, t: datetime) -> bool:
        second, minute, hour, day, month, weekday = self.fields
        return (t.second in second and t.minute in minute and t.hour in hour and t.day in day
                and t.month in month and (t.weekday() + 1) % 7 in weekday)  # fmt: skip

    def next_after(self, t: datetime) -> datetime:
        candidate = t.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(366 * 24 * 3600):  # a year of seconds at most; skip whole minutes when the minute is out
            if self.matches(candidate):
                return candidate
            if candidate.minute not in self.fields[1] or candidate.hour not in self.fields[2]:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
            else:
                candidate += timedelta(seconds=1)
        raise ScheduleError("the schedule never fires")


@dataclass(frozen=True)
class TimerTriggerSpec:
    name: str
    handler: Callable[..., Any]
    arg_name: str
    schedule: Schedule
    run_on_startup: bool


def timer_specs(functions: Iterable[Any]) -> list[TimerTriggerSpec]:
    """The timer triggers among an app's indexed functions (`FunctionCatalog.timers`)."""
    specs = []
    for function in functions:
        metadata = json.loads(function.get_function_json())
        trigger = next((b for b in metadata["bindings"] if b.get("type") == "timerTrigger"), None)
        handler = function.get_user_function()
        name = function.get_function_name() or handler_name(handler)
        if trigger is None or disabled(name):
            continue
        text = str(trigger.get("schedule") or "")
        if text.startswith("%") and text.endswith("%"):
            text = os.environ.get(text.strip("%"), "")
        specs.append(TimerTriggerSpec(name, handler, trigger["name"], Schedule.parse(text),
                                      bool(trigger.get("runOnStartup"))))  # fmt: skip
    return specs


class _Timer(func.TimerRequest):
    def __init__(self, past_due: bool) -> None:
        self._past_due = past_due

    @property
    def past_due(self) -> bool:
        return self._past_due


class TimerRunner:
    def __init__(self, specs: list[TimerTriggerSpec]) -> None:
        self._specs = specs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for spec in self._specs:
            log.info(
                "timer %-23s %s", spec.name, " ".join(",".join(map(str, sorted(f))) for f in spec.schedule.fields)[:60]
            )
            self._tasks.append(asyncio.create_task(self._loop(spec)))

    async def _loop(self, spec: TimerTriggerSpec) -> None:
        if spec.run_on_startup:
            await self._fire(spec)
        while True:
            now = datetime.now(UTC)
            due = spec.schedule.next_after(now)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self._fire(spec)

    async def _fire(self, spec: TimerTriggerSpec) -> None:
        try:
            _, invocation, ms = await invoke(spec.handler, spec.name, spec.arg_name, _Timer(False), False)
            log.info("timer %s done (%s, %.0f ms)", spec.name, invocation, ms)
        except Exception:
            log.exception("timer %s failed", spec.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
