"""Typed connector errors: what apply needs to decide between retry, re-schedule, re-read and the error log."""

from __future__ import annotations


class ConnectorError(Exception):
    """A request to Dataverse or F&O failed. `message` is the server's own text when it sent one."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, request: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request = request  # "PATCH https://…/accounts(…)": never a header or a body
        self.code = code

    def __str__(self) -> str:
        where = f" ({self.request})" if self.request else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.message}{where}"


class Throttled(ConnectorError):
    """429 service protection: wait `retry_after` seconds (the server's `Retry-After`) before the next request."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Transient(ConnectorError):
    """5xx, a timeout, a dropped connection or a gateway's HTML page: the same request may well succeed later."""

    retryable = True


class ConcurrencyConflict(ConnectorError):
    """412: the row changed since the ETag we sent (or, create-only, the row already exists)."""


class NotFound(ConnectorError):
    """404: no such row (or entity set)."""


class Unauthorized(ConnectorError):
    """401/403: the token was refused or the application user lacks privileges."""


class ValidationFailed(ConnectorError):
    """Any other 4xx: the server refused the data itself; retrying the same request cannot help."""
