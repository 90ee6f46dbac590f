"""The console's pure decisions: alert rules, the per-minute figures, who is acting, entry ids."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from shared.ops.alerts import Alert, AlertRule, fires, message
from shared.ops.auth import operator
from shared.ops.ids import UnknownId, entry_id, is_replay, original_event_id, parse_entry_id, replay_event_id
from shared.ops.settings import OpsSettings
from shared.ops.status import figures


def test_an_error_rule_fires_at_n_errors_in_its_window_only() -> None:
    rule = AlertRule(errors=3, minutes=5)
    assert fires(rule, "error", "bad", 10, 2) is None
    assert fires(rule, "error", "bad", 10, 3) == "3 errors within 5 minutes; the last: bad"
    assert fires(rule, "applied", "", 10, None) is None


def test_lag_and_parked_conflict_rules() -> None:
    lag = AlertRule(lag_minutes=2, actions=["pause", "notify"])
    assert fires(lag, "applied", "", 119_000, None) is None
    assert fires(lag, "applied", "", 121_000, None) is not None
    parked = AlertRule(conflict_parked=True)
    assert fires(parked, "conflict", "parked for a person: name", 1, None) is not None
    assert fires(parked, "conflict", "conflict on name, fno won", 1, None) is None


def test_a_rule_has_exactly_one_condition() -> None:
    with pytest.raises(ValidationError):
        AlertRule(errors=1, conflict_parked=True)
    with pytest.raises(ValidationError):
        AlertRule()
    with pytest.raises(ValidationError):
        AlertRule(errors=1, actions=["email"])  # type: ignore[list-item]


def test_rules_come_from_settings_for_every_map_and_one() -> None:
    settings = OpsSettings(ALERT_RULES=json.dumps({"*": [{"conflict_parked": True}], "customers": [{"errors": 2}]}))
    assert [r.name for r in settings.rules_for("customers")] == ["a conflict parked", "2 errors in 5 minutes"]
    assert [r.name for r in settings.rules_for("vendors")] == ["a conflict parked"]


def test_the_notification_names_the_map_what_happened_and_links_the_console() -> None:
    body = message(Alert(map="customers", rule="x", what="5 errors", actions=["pause"]), "https://app/api/console")
    assert body["console"] == "https://app/api/console#map=customers" and "customers" in str(body["text"])


def test_figures_per_minute_of_the_last_hour() -> None:
    now = 1_000_000_040.0  # 20 s into a minute (1_000_000_020 is a whole minute)
    rows = [
        {"RowKey": f"{int(now) - 10:012d}|a", "Applied": 2, "Errors": 1, "LastLatency": 50.0, "LastAt": now - 5},
        {"RowKey": f"{int(now) - 10:012d}|b", "Applied": 1, "Conflicts": 1, "LastLatency": 70.0, "LastAt": now - 2},
        {"RowKey": f"{int(now) - 600:012d}|a", "Applied": 4, "LastLatency": -1.0, "LastAt": 0},
        {"RowKey": f"{int(now) - 4000:012d}|a", "Applied": 9},  # over an hour ago
    ]
    f = figures(rows, now)
    assert (f["applied_last_minute"], f["applied_last_hour"], f["latest_latency_ms"]) == (3, 7, 70.0)
    assert len(f["chart"]) == 60 and f["chart"][-1] | {"minute": 0} == {"minute": 0, "applied": 3, "errors": 1,
                                                                         "conflicts": 1}  # fmt: skip
    assert sum(p["applied"] for p in f["chart"]) == 7


def _principal(*roles: str) -> str:
    claims = [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": "Ada"}]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


def test_signed_in_operators_need_the_app_role() -> None:
    role = "Bridge.Operator"
    ok = operator({"X-MS-CLIENT-PRINCIPAL": _principal(role), "X-MS-CLIENT-PRINCIPAL-NAME": "ada@x"}, "entra", role)
    assert ok.allowed and ok.name == "ada@x"
    other = operator(
        {"X-MS-CLIENT-PRINCIPAL": _principal("Reader"), "X-MS-CLIENT-PRINCIPAL-NAME": "bob"}, "entra", role
    )
    assert not other.allowed and "Bridge.Operator" in other.why
    assert not operator({}, "entra", role).allowed and operator({}, "entra", role).name == ""
    assert not operator({"X-MS-CLIENT-PRINCIPAL": "%%%", "X-MS-CLIENT-PRINCIPAL-NAME": "x"}, "entra", role).allowed
    assert operator({}, "key", role).name == "master key"


def test_entry_ids_round_trip_and_replays_name_their_original() -> None:
    assert parse_entry_id(entry_id("customers", "fno:a/b#1")) == ("customers", "fno:a/b#1")
    with pytest.raises(UnknownId):
        parse_entry_id("not-an-id")
    replay = replay_event_id(replay_event_id("fno:1", 1), 2)
    assert replay == "fno:1~replay2" and is_replay(replay) and original_event_id(replay) == "fno:1"


def test_status_shows_the_sync_run_in_progress_over_a_map_with_its_progress() -> None:
    from datetime import UTC, datetime, timedelta

    from shared.initialsync.model import MapProgress, Mode, RunState
    from shared.ops.status import sync_run

    started = datetime.now(UTC) - timedelta(seconds=10)
    progress = MapProgress(map="customers", state="writing", planned=1000, processed=250, started_at=started,
                           samples={"fno_only": [{"CustomerAccount": "C1"}]})  # fmt: skip
    old = RunState(run_id="r1", mode=Mode.SYNC, maps=["customers"], state="done", created_at=started)
    running = RunState(run_id="r2", mode=Mode.RECONCILE, maps=["companies", "customers"], state="running",
                       progress={"customers": progress}, created_at=started + timedelta(seconds=1))  # fmt: skip
    shown = sync_run("customers", [old, running])
    assert shown is not None and (shown["run_id"], shown["mode"], shown["state"]) == ("r2", "reconcile", "running")
    assert shown["progress"]["processed"] == 250 and shown["progress"]["planned"] == 1000
    assert "samples" not in shown["progress"] and shown["progress"]["rows_per_second"] > 0
    assert sync_run("companies", [old, running]) == {"run_id": "r2", "mode": "reconcile", "state": "running",
                                                      "message": "", "progress": None}  # fmt: skip
    assert sync_run("vendors", [old, running]) is None and sync_run("customers", [old]) is None


def test_status_shows_the_run_working_on_the_map_and_a_failed_or_dead_run_as_failed() -> None:
    """Two runs over a map: the one writing it is shown, not a newer one waiting its turn (shown at 0/0). A run whose
    step is gone says `running` in its record until its status is read: shown failed, with why; so is a failed run,
    until a newer run starts (go-live review: a failed run never appeared)."""
    from datetime import UTC, datetime, timedelta

    from shared.initialsync import liveness
    from shared.initialsync.model import MapProgress, Mode, RunState
    from shared.ops.status import sync_run

    now = datetime.now(UTC)
    busy = MapProgress(map="customers", state="writing", planned=10, processed=8)
    writing = RunState(run_id="r1", mode=Mode.SYNC, maps=["customers"], state="running", created_at=now,
                       progress={"customers": busy})  # fmt: skip
    waiting = RunState(run_id="r2", mode=Mode.SYNC, maps=["companies", "customers"], state="running",
                       created_at=now + timedelta(seconds=1),
                       progress={"customers": MapProgress(map="customers")})  # fmt: skip
    assert (sync_run("customers", [writing, waiting], now) or {})["run_id"] == "r1"
    seen = now - liveness.STEP_LEASE - timedelta(seconds=1)
    dead = writing.model_copy(update={"created_at": seen, "updated_at": seen})
    shown = sync_run("customers", [dead], now) or {}
    assert shown["state"] == "failed" and "no step has run since" in shown["message"]
    assert dead.state == "running"  # the record is not changed by showing it
    failed = writing.model_copy(update={"state": "failed", "message": "gave up"})
    assert (sync_run("customers", [failed], now) or {})["message"] == "gave up"
    held = writing.model_copy(update={"state": "held", "message": "customers is paused"})
    assert (sync_run("customers", [held], now) or {})["state"] == "held"  # the map paused: its run waits
    done = waiting.model_copy(update={"state": "done", "created_at": now + timedelta(seconds=5)})
    assert sync_run("customers", [failed, done], now) is None  # a newer run finished since
