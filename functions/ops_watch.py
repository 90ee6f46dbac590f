"""Every minute: the lag rules checked on the changes still waiting (`shared.ops.watch`)."""

from __future__ import annotations

import azure.functions as func

from shared.ops.observer import get_observer
from shared.ops.settings import get_ops_settings
from shared.ops.watch import watch_lag
from shared.ops.wiring import get_waiting

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.timer_trigger(schedule="30 * * * * *", arg_name="timer", run_on_startup=False)
async def watch_lag_rules(timer: func.TimerRequest) -> None:
    from shared.bridge import bridge

    await watch_lag(get_observer(), get_waiting(), bridge().maps.order, get_ops_settings().rules_for)
