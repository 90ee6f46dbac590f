"""OData `$batch` (multipart/mixed) requests and responses, shared by both connectors.

Each change set is atomic: all of its operations apply or none do. A failed change set shows up as one error
response (Dataverse answers it in place of the change set; F&O inside it, under an outer 200), so every operation of
a failed change set is reported failed: the one the server named with its own error, the others as rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.connectors.errors import ConnectorError, Transient, ValidationFailed
from shared.connectors.http import error_for
from shared.connectors.wire import dumps, loads

MAX_OPERATIONS = 1000


@dataclass(frozen=True)
class BatchOperation:
    method: str
    path: str  # relative to the API root, e.g. "accounts(accountnumber='A1')"
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class BatchResult:
    operation: BatchOperation
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: ConnectorError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


def encode(base_url: str, change_sets: Sequence[Sequence[BatchOperation]]) -> tuple[str, bytes]:
    """(content type, body) of a `$batch` request; Content-IDs number the operations from 1 in order."""
    count = sum(len(c) for c in change_sets)
    if count == 0:
        raise ValueError("an empty batch")
    if count > MAX_OPERATIONS:
        raise ValueError(f"{count} operations: a $batch takes at most {MAX_OPERATIONS}")
    unique = uuid.uuid4().hex  # one random part per request (a syscall each): change sets are numbered under it
    batch = f"batch_{unique}"
    parts: list[str] = []
    content_id = 0
    for number, change_set in enumerate(change_sets):
        boundary = f"changeset_{unique}_{number}"
        parts.append(f"--{batch}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n")
        for op in change_set:
            content_id += 1
            parts.append(_operation(boundary, content_id, base_url, op))
        parts.append(f"--{boundary}--\r\n\r\n")
    parts.append(f"--{batch}--\r\n")
    return f"multipart/mixed; boundary={batch}", "".join(parts).encode("utf-8")


def _operation(boundary: str, content_id: int, base_url: str, op: BatchOperation) -> str:
    """One operation's part of a change set, each of its lines ending in CRLF (its body's too)."""
    headers = op.headers
    if op.body is not None and "Content-Type" not in headers:
        headers = {**headers, "Content-Type": "application/json; type=entry"}
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    body = dumps(op.body) if op.body is not None else ""
    return (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: {content_id}\r\n\r\n{op.method} {base_url}{op.path} HTTP/1.1\r\n{lines}\r\n{body}\r\n"
    )


@dataclass
class _Part:
    headers: dict[str, str]
    body: bytes


def _boundary(content_type: str) -> str | None:
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    return None


def _split_headers(block: bytes) -> tuple[dict[str, str], bytes]:
    block = block.lstrip(b"\r\n")
    head, sep, rest = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = block.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parts(content_type: str, body: bytes) -> list[_Part]:
    boundary = _boundary(content_type)
    if boundary is None:
        raise ValueError(f"no boundary in {content_type!r}")
    delimiter = b"--" + boundary.encode()
    pieces = body.split(delimiter)[1:]
    parts = []
    for piece in pieces:
        if piece.startswith(b"--"):
            break
        headers, rest = _split_headers(piece)
        parts.append(_Part(headers, rest.rstrip(b"\r\n") if not rest.endswith(b"\r\n\r\n") else rest[:-2]))
    return parts


@dataclass
class HttpResponsePart:
    content_id: str | None
    status: int
    headers: dict[str, str]
    body: bytes


def _http_part(part: _Part) -> HttpResponsePart:
    status_line, _, rest = part.body.lstrip(b"\r\n").partition(b"\n")
    words = status_line.decode("utf-8", "replace").split()
    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 500
    headers, body = _split_headers(rest)
    return HttpResponsePart(part.headers.get("content-id"), status, headers, body.strip(b"\r\n"))


def responses(content_type: str, body: bytes) -> list[list[HttpResponsePart]]:
    """The responses of a `$batch`, grouped as the server grouped them (a change set, or a lone response)."""
    groups: list[list[HttpResponsePart]] = []
    for part in _parts(content_type, body):
        inner_type = part.headers.get("content-type", "")
        if inner_type.startswith("multipart/mixed"):
            groups.append([_http_part(p) for p in _parts(inner_type, part.body)])
        else:
            groups.append([_http_part(part)])
    return groups


def results(
    base_url: str, change_sets: Sequence[Sequence[BatchOperation]], content_type: str, body: bytes
) -> list[BatchResult]:
    """One result per operation, in request order."""
    ops = [op for change_set in change_sets for op in change_set]
    out = [BatchResult(op) for op in ops]
    by_id: dict[str, int] = {str(i + 1): i for i in range(len(ops))}
    sets: list[range] = []
    start = 0
    for change_set in change_sets:
        sets.append(range(start, start + len(change_set)))
        start += len(change_set)
    position = 0
    for group in responses(content_type, body):
        for response in group:
            index = by_id.get(response.content_id or "", None)
            if index is None:
                index = position if position < len(ops) else len(ops) - 1
            position = index + 1
            result = out[index]
            result.status, result.headers = response.status, response.headers
            result.body = loads(response.body) if response.body[:1] in (b"{", b"[") else None
            if not 200 <= response.status < 300:
                request = f"{result.operation.method} {base_url}{result.operation.path.split('?')[0]}"
                result.error = error_for(response.status, response.headers, response.body, request)
    for members in sets:
        failed = next((out[i] for i in members if out[i].error is not None), None)
        for i in members:
            if failed is not None and out[i] is not failed:
                out[i].error = ValidationFailed(
                    f"rolled back: its change set failed ({failed.error})", request=out[i].operation.path
                )
            elif out[i].status is None and out[i].error is None:
                # Never tried (the service stopped at an earlier failure: no `odata.continue-on-error`, which F&O
                # may not honour): nothing is wrong with it, so it is tried again, not logged as the row's error.
                out[i].error = Transient("not run: an earlier change set failed", request=out[i].operation.path)
    return out
