"""The HTTP layer both connectors share: auth header, bounded concurrency, typed errors, retries.

Retries follow the service-protection rules of both apps: a `Retry-After` is always honoured (never retried
sooner); transient failures back off exponentially with jitter; attempts and total time are bounded. When the
server asks for a longer wait than the budget has left, the `Throttled` error is raised at once so the caller
(apply) can re-schedule the change instead of holding its session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from opentelemetry.propagate import inject
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from shared.connectors.auth import TokenSource
from shared.connectors.errors import (
    ConcurrencyConflict,
    ConnectorError,
    NotFound,
    Throttled,
    Transient,
    Unauthorized,
    ValidationFailed,
)
from shared.connectors.wire import dumps, loads

DEFAULT_MAX_IN_FLIGHT = 52  # Dataverse's concurrent-requests limit per user


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    total_seconds: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0


NO_RETRY = RetryPolicy(attempts=1, total_seconds=0)


def retry_after_seconds(value: str | None, default: float = 5.0) -> float:
    """`Retry-After` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def server_message(body: Any) -> tuple[str | None, str | None]:
    """(message, code) from either app's error body: F&O's useful text is `innererror.message`, Dataverse's is
    `error.message`."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None, None
    error = body["error"]
    inner = error.get("innererror")
    message = inner.get("message") if isinstance(inner, dict) and inner.get("message") else error.get("message")
    code = error.get("code") or None
    return (str(message) if message else None), (str(code) if code else None)


F_AND_O_WRITE_FAILED = "AxODataWriteException"
# An Infolog that a retry may well not meet again: the write lost to another, not to the data.
_PASSING = ("deadlock", "update conflict", "timeout", "timed out", "try again")


def _write_refused(body: Any, message: str) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    inner = body["error"].get("innererror")
    kind = str(inner.get("type") or "") if isinstance(inner, dict) else ""
    return F_AND_O_WRITE_FAILED in kind and not any(word in message.lower() for word in _PASSING)


def error_for(status: int, headers: Mapping[str, str], content: bytes, request: str) -> ConnectorError:
    """The typed error for a non-2xx answer (also used for each operation inside a `$batch`)."""
    content_type = headers.get("content-type", "")
    body: Any = None
    if "json" in content_type or content[:1] in (b"{", b"["):
        try:
            body = loads(content)
        except ValueError:
            body = None
    message, code = server_message(body)
    if message is None:
        if "html" in content_type or content.lstrip()[:1] == b"<":
            message = f"the server answered an HTML page ({status}), likely a gateway"
        else:
            message = content.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    kw: dict[str, Any] = {"status": status, "request": request, "code": code}
    if status == 429:
        return Throttled(message, retry_after=retry_after_seconds(headers.get("retry-after")), **kw)
    if status == 500 and _write_refused(body, message):
        # F&O answers a write it refused inside a `$batch` change set 500 (a 400 alone), with the Infolog: the
        # data, not the service — retried it would fail the same way, so it is logged as this row's error.
        return ValidationFailed(message, **kw)
    if status in (408, 500, 502, 503, 504) or status > 504:
        if status == 503 and headers.get("retry-after"):
            return Throttled(message, retry_after=retry_after_seconds(headers.get("retry-after")), **kw)
        return Transient(message, **kw)
    if status in (401, 403):
        return Unauthorized(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 412:
        return ConcurrencyConflict(message, **kw)
    return ValidationFailed(message, **kw)


class ODataTransport:
    """One per target app per process: an `httpx.AsyncClient` with the app's base URL, token and limits."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        retry: RetryPolicy | None = None,
        timeout_seconds: float = 30.0,
        default_headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._tokens = tokens
        self._slots = asyncio.Semaphore(max_in_flight)
        self.dop_hint: int | None = None  # Dataverse's x-ms-dop-hint, as last answered (bulk writers follow it)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_seconds,
            headers={"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
            | dict(default_headers or {}),
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
        )

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path.lstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """Send with retries; a 2xx response, or the typed error of the last attempt."""
        policy = retry or self.retry
        started = time.monotonic()

        def should_retry(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if not isinstance(error, ConnectorError) or not error.retryable:
                return False
            left = policy.total_seconds - (time.monotonic() - started)
            return not (isinstance(error, Throttled) and error.retry_after > left)

        backoff = wait_exponential_jitter(multiplier=policy.backoff_initial, max=policy.backoff_max)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, Throttled):
                return error.retry_after
            return float(backoff(state))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.total_seconds),
            wait=wait,
            retry=should_retry,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.send_once(method, path, params=params, body=body, content=content, headers=headers)
        raise AssertionError("unreachable")  # pragma: no cover

    async def send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = self.url(path)
        described = f"{method} {url.split('?')[0]}"
        all_headers = {"Authorization": f"Bearer {await self._tokens.token()}"} | dict(headers or {})
        inject(all_headers)  # `traceparent`: the change's trace (the apply span's) reaches the app's request
        if body is not None:
            content = dumps(body).encode("utf-8")
            all_headers.setdefault("Content-Type", "application/json; charset=utf-8")
        async with self._slots:
            try:
                response = await self._client.request(method, url, params=params, content=content, headers=all_headers)
            except httpx.TimeoutException as exc:
                raise Transient(f"timed out: {type(exc).__name__}", request=described) from exc
            except httpx.TransportError as exc:
                raise Transient(f"connection failed: {type(exc).__name__}: {exc}", request=described) from exc
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit():
            self.dop_hint = int(hint)
        if response.is_success:
            return response
        raise error_for(response.status_code, response.headers, response.content, described)

    async def close(self) -> None:
        await self._client.aclose()
        await self._tokens.close()
