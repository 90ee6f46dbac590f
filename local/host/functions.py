"""Reads a `func.FunctionApp`'s binding metadata into the specs the dev host serves.

The real host reads `function.json`-style metadata, not Python attributes, so we do the same: each function's
`get_function_json()` is what decides its trigger, route, methods, auth level, queue and session mode.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import azure.functions as func

AuthLevel = Literal["anonymous", "function", "admin"]


@dataclass(frozen=True)
class HttpTriggerSpec:
    name: str
    handler: Callable[..., Any]
    arg_name: str
    route: str
    methods: tuple[str, ...]  # empty = every method
    auth_level: AuthLevel
    wants_context: bool


@dataclass(frozen=True)
class ServiceBusTriggerSpec:
    name: str
    handler: Callable[..., Any]
    arg_name: str
    queue_name: str
    connection: str
    is_sessions_enabled: bool
    auto_complete: bool | None
    wants_context: bool
    many: bool = False  # cardinality "many": the function takes a list of messages


@dataclass
class FunctionCatalog:
    http: list[HttpTriggerSpec] = field(default_factory=list)
    service_bus: list[ServiceBusTriggerSpec] = field(default_factory=list)
    timers: list[Any] = field(default_factory=list)  # timerTrigger functions, for local/host/timers.py
    unsupported: list[str] = field(default_factory=list)


class FunctionAppLoadError(RuntimeError):
    pass


def load_app(target: str) -> func.FunctionApp:
    """`module:attribute`, e.g. `function_app:app`."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FunctionAppLoadError(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, func.FunctionApp):
        raise FunctionAppLoadError(f"{target!r} is not an azure.functions.FunctionApp")
    return app


def shutdown_hook(target: str) -> Callable[[], Awaitable[None]] | None:
    """The app module's `shutdown`, if it has one: an async function the dev host awaits when it stops."""
    module = importlib.import_module(target.partition(":")[0])
    hook = getattr(module, "shutdown", None)
    if hook is None:
        return None
    if not inspect.iscoroutinefunction(hook):
        raise FunctionAppLoadError(f"{module.__name__}.shutdown must be an async function taking no arguments")
    return cast(Callable[[], Awaitable[None]], hook)


def handler_name(handler: Callable[..., Any]) -> str:
    return str(getattr(handler, "__name__", "function"))


def disabled(name: str) -> bool:
    """The Functions host's switch: app setting `AzureWebJobs.<name>.Disabled` (`AzureWebJobs__<name>__Disabled`
    where dots cannot be used) set to true."""
    for setting in (f"AzureWebJobs.{name}.Disabled", f"AzureWebJobs__{name}__Disabled"):
        if os.environ.get(setting, "").strip().lower() in ("true", "1"):
            return True
    return False


def catalog(app: func.FunctionApp) -> FunctionCatalog:
    found = FunctionCatalog()
    for function in app.get_functions():
        name = function.get_function_name() or handler_name(function.get_user_function())
        handler = function.get_user_function()
        metadata = json.loads(function.get_function_json())
        trigger = next((b for b in metadata["bindings"] if b.get("type", "").endswith("Trigger")), None)
        wants_context = "context" in inspect.signature(handler).parameters
        if disabled(name):
            found.unsupported.append(f"{name} (disabled by AzureWebJobs.{name}.Disabled)")
        elif trigger is None:
            found.unsupported.append(f"{name} (no trigger)")
        elif trigger["type"] == "httpTrigger":
            found.http.append(
                HttpTriggerSpec(
                    name=name,
                    handler=handler,
                    arg_name=trigger["name"],
                    route=str(trigger.get("route") or name).strip("/"),
                    methods=tuple(m.upper() for m in trigger.get("methods") or ()),
                    auth_level=str(trigger.get("authLevel") or "function").lower(),  # type: ignore[arg-type]
                    wants_context=wants_context,
                )
            )
        elif trigger["type"] == "serviceBusTrigger" and trigger.get("queueName"):
            found.service_bus.append(
                ServiceBusTriggerSpec(
                    name=name,
                    handler=handler,
                    arg_name=trigger["name"],
                    queue_name=trigger["queueName"],
                    connection=trigger.get("connection") or "AzureWebJobsServiceBus",
                    is_sessions_enabled=bool(trigger.get("isSessionsEnabled")),
                    auto_complete=trigger.get("autoCompleteMessages"),
                    wants_context=wants_context,
                    many=str(trigger.get("cardinality") or "one").lower() == "many",
                )
            )
        elif trigger["type"] == "timerTrigger":
            found.timers.append(function)
        else:
            found.unsupported.append(f"{name} ({trigger['type']})")
    return found
