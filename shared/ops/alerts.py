"""Alert rules per map, and the pure decision whether one fires on an apply outcome.

A rule is one of: `errors` within `minutes` (N errors in T minutes), `lag_minutes` (a change took longer than L
minutes from its source to the target, or waits longer than that), or `conflict_parked` (the `manual` policy parked
a conflict for a person). Its actions: `pause` the map and/or `notify` (a JSON POST to ALERT_WEBHOOK_URL, through
the `notifications` queue so that a slow or failing receiver never blocks sync).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Action = Literal["pause", "notify"]


def _notify_only() -> list[Action]:
    return ["notify"]


class AlertRule(BaseModel):
    errors: int | None = Field(default=None, gt=0)
    minutes: float = Field(default=5.0, gt=0)
    lag_minutes: float | None = Field(default=None, gt=0)
    conflict_parked: bool = False
    actions: list[Action] = Field(default_factory=_notify_only, min_length=1)
    cooldown_minutes: float = Field(default=15.0, ge=0, description="The same rule fires at most this often")

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        kinds = [self.errors is not None, self.lag_minutes is not None, self.conflict_parked]
        if sum(kinds) != 1:
            raise ValueError("an alert rule has exactly one of: errors (with minutes), lag_minutes, conflict_parked")
        return self

    @property
    def name(self) -> str:
        if self.errors is not None:
            return f"{self.errors} errors in {self.minutes:g} minutes"
        if self.lag_minutes is not None:
            return f"lag over {self.lag_minutes:g} minutes"
        return "a conflict parked"


class Alert(BaseModel):
    map: str
    rule: str
    what: str
    actions: list[Action]
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def fires(rule: AlertRule, outcome: str, detail: str, latency_ms: float, recent_errors: int | None) -> str | None:
    """What happened, when `rule` fires on this outcome; None otherwise. `recent_errors` is the map's open errors
    within the rule's window (counted only for error outcomes)."""
    if rule.errors is not None:
        if outcome == "error" and recent_errors is not None and recent_errors >= rule.errors:
            return f"{recent_errors} errors within {rule.minutes:g} minutes; the last: {detail}"
        return None
    if rule.lag_minutes is not None:
        if outcome == "waiting" and latency_ms > rule.lag_minutes * 60_000:  # still queued or deferred
            return f"a change has waited {latency_ms / 60_000:.1f} minutes (over {rule.lag_minutes:g}): {detail}"
        if outcome not in ("held", "waiting") and latency_ms > rule.lag_minutes * 60_000:
            return f"a change took {latency_ms / 60_000:.1f} minutes to apply (over {rule.lag_minutes:g})"
        return None
    if outcome == "conflict" and detail.startswith("parked"):
        return f"a conflict was parked for a person: {detail}"
    return None


def cooled_down(last: datetime | None, rule: AlertRule, now: datetime) -> bool:
    return last is None or (now - last).total_seconds() >= rule.cooldown_minutes * 60


def message(alert: Alert, console_url: str | None) -> dict[str, object]:
    """The notification's JSON: which map, what happened, a link to the console. `text` is what a Teams incoming
    webhook shows; Logic Apps and PagerDuty-style receivers read the fields."""
    link = f"{console_url.rstrip('/')}#map={alert.map}" if console_url else None
    text = f"Bridge alert on map **{alert.map}**: {alert.what} ({alert.rule}; actions: {', '.join(alert.actions)})"
    return {
        "text": text + (f" — {link}" if link else ""),
        "map": alert.map,
        "rule": alert.rule,
        "what": alert.what,
        "actions": list(alert.actions),
        "at": alert.at.isoformat(),
        "console": link,
    }
