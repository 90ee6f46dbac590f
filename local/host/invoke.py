"""Calls a user function the way the Python worker does: `async def` on the loop, `def` in a thread."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func

log = logging.getLogger("local.host")


class InvocationContext(func.Context):
    def __init__(self, function_name: str, invocation_id: str) -> None:
        self._function_name = function_name
        self._invocation_id = invocation_id
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._local


async def invoke(
    handler: Callable[..., Any], name: str, arg_name: str, argument: Any, wants_context: bool
) -> tuple[Any, str, float]:
    """Runs one invocation; returns (result, invocation id, duration ms). Exceptions propagate."""
    invocation_id = str(uuid.uuid4())
    kwargs: dict[str, Any] = {arg_name: argument}
    if wants_context:
        kwargs["context"] = InvocationContext(name, invocation_id)
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(handler):
            result = await handler(**kwargs)
        else:
            result = await asyncio.to_thread(handler, **kwargs)
    finally:
        duration = (time.perf_counter() - started) * 1000
    return result, invocation_id, duration
