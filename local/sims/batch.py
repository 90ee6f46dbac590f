"""OData `$batch` for both simulators: multipart/mixed in and out, each change set atomic (a savepoint in the request's
one SQLite transaction),
`Prefer: odata.continue-on-error`, and change-set references (`$1`) to rows created earlier in the same change set.
Dataverse answers a failed change set with the failing response alone; F&O inside the change set, under an outer
200 (the dialect's name decides)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.sims.engine import Change, Reply, Request, SimError, Simulator, body_of
from shared.connectors.wire import dumps


def run_batch(sim: Simulator, request: Request, changes: list[Change]) -> tuple[str, bytes]:
    content_type = request.headers.get("content-type", "")
    message = _Part.parse(content_type, request.body)
    if not message.is_multipart():
        raise SimError(400, "a $batch body must be multipart/mixed")
    continue_on_error = "odata.continue-on-error" in request.headers.get("prefer", "")
    unique = uuid.uuid4()  # one random part per response (a syscall each): its change sets are numbered under it
    boundary = f"batchresponse_{unique}"
    out: list[str] = []
    parts: list[Any] = list(message.get_payload())  # type: ignore[arg-type]
    with sim.store.batch():  # one SQLite transaction; each change set a savepoint in it
        _run_parts(sim, parts, request, changes, continue_on_error, unique, boundary, out)
    out += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(out).encode("utf-8")


def _run_parts(
    sim: Simulator,
    parts: list[Any],
    request: Request,
    changes: list[Change],
    continue_on_error: bool,
    unique: uuid.UUID,
    boundary: str,
    out: list[str],
) -> None:
    failed = False
    for number, part in enumerate(parts):
        if failed and not continue_on_error:
            break
        if part.is_multipart():
            group = [p for p in part.get_payload()]
            done, ok = _change_set(sim, group, request, changes)
            failed = failed or not ok
            if ok or sim.dialect.name == "fno":
                inner = f"changesetresponse_{unique}_{number}"
                out += [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
                for content_id, reply in done:
                    out += [f"--{inner}", *_http_part(content_id, reply)]
                out += [f"--{inner}--", ""]
            else:  # Dataverse answers a failed change set with the failing response alone
                content_id, reply = done[-1]
                out += [f"--{boundary}", *_http_part(content_id, reply)]
        else:
            inner_request = _inner(sim, part, request)
            try:
                with sim.store.change_set():
                    reply = sim.execute(inner_request, changes)
            except SimError as exc:
                reply, failed = sim.error_reply(exc), True
            out += [f"--{boundary}", *_http_part(part.get("Content-ID"), reply)]


class _Part:
    """One MIME part of a `$batch` body: headers and either a body or sub-parts (a change set). The stdlib's email
    parser compiles a regular expression per boundary and walks the body line by line: a batch of 1,000 change
    sets cost it 2 s; splitting on the boundaries costs a few ms."""

    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body
        self._parts: list[_Part] | None = None
        boundary = _boundary(headers.get("content-type", ""))
        if boundary is not None:
            self._parts = _split(boundary, body)

    @classmethod
    def parse(cls, content_type: str, body: bytes) -> _Part:
        return cls({"content-type": content_type}, body)

    def is_multipart(self) -> bool:
        return self._parts is not None

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def get_payload(self, decode: bool = False) -> Any:
        return self._parts if self._parts is not None and not decode else self.body


def _boundary(content_type: str) -> str | None:
    if not content_type.lower().startswith("multipart/"):
        return None
    for piece in content_type.split(";")[1:]:
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    return None


def _split(boundary: str, body: bytes) -> list[_Part]:
    delimiter = b"--" + boundary.encode()
    parts = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        piece = piece.removeprefix(b"\r\n").removeprefix(b"\n")
        head, sep, rest = piece.partition(b"\r\n\r\n")
        if not sep:
            head, sep, rest = piece.partition(b"\n\n")
        parts.append(_Part(_part_headers(head), rest.removesuffix(b"\r\n").removesuffix(b"\n")))
    return parts


# Header blocks seen before → their headers (read, never changed): an operation's part head differs from the last
# batch's only by its Content-ID. A change set's head names its own boundary, never seen again: not kept.
_PART_HEADS: dict[bytes, dict[str, str]] = {}


def _part_headers(head: bytes) -> dict[str, str]:
    known = _PART_HEADS.get(head)
    if known is not None:
        return known
    headers = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if b"boundary" not in head:
        if len(_PART_HEADS) > 4_000:
            _PART_HEADS.clear()
        _PART_HEADS[head] = headers
    return headers


def _change_set(
    sim: Simulator, parts: list[Any], request: Request, changes: list[Change]
) -> tuple[list[tuple[str | None, Reply]], bool]:
    done: list[tuple[str | None, Reply]] = []
    pending: list[Change] = []
    created: dict[str, str] = {}  # Content-ID → the row's path, for `$1` references later in the change set
    try:
        with sim.store.change_set():
            for part in parts:
                content_id = part.get("Content-ID")
                try:
                    inner = _resolve_references(_inner(sim, part, request), created)
                    reply = sim.execute(inner, pending)
                    done.append((content_id, reply))
                    entity = reply.headers.get("OData-EntityId", "")
                    if content_id and sim.dialect.root in entity:
                        created[str(content_id)] = entity.split(sim.dialect.root, 1)[1]
                except SimError as exc:
                    if sim.dialect.name == "fno" and exc.status == 400:
                        # F&O answers a write refused inside a change set 500, with the Infolog (a captured
                        # `$batch` answer: "HTTP/1.1 500 Internal Server Error", AxODataWriteException "… The
                        # record already exists"); the same write alone is a 400.
                        exc = SimError(500, exc.message, exc.code, exc.headers)
                    done.append((content_id, sim.error_reply(exc)))
                    raise
    except SimError:
        for change in pending:  # rolled back: neither written nor counted
            sim.writes[change.table.entity_set] -= 1
        return done, False
    changes.extend(pending)
    return done, True


def _inner(sim: Simulator, part: Any, outer: Request) -> Request:
    payload = part.get_payload(decode=True) or b""
    # Line ends are read as LF (CRLF → LF), the head ending at the first blank line. Converted here in the head alone
    # (and the body only if it holds a CR) when the first CRLF CRLF is that blank line; else the whole payload is.
    end = payload.find(b"\r\n\r\n")
    head = payload[: end + 4].replace(b"\r\n", b"\n") if end >= 0 else b""
    if end >= 0 and head.find(b"\n\n") == len(head) - 2:
        head, body = head[:-2], payload[end + 4 :]
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
    else:
        head, _, body = payload.replace(b"\r\n", b"\n").partition(b"\n\n")
    line, _, rest = head.partition(b"\n")
    method, url, *_ = line.decode("utf-8").split(" ")
    headers = _request_headers(rest) if rest or b"\n" in head else {}
    path, query = _address(url, sim.dialect.root, outer.base)
    return Request(method, unquote(path), _query(query), headers, body.strip(b"\n"), outer.user, outer.base)


_REQUEST_HEADS: dict[bytes, dict[str, str]] = {}  # an operation's headers (after its request line) → parsed


def _request_headers(block: bytes) -> dict[str, str]:
    """The headers of an operation, as lower-cased names (a bulk writer sends the same with every operation)."""
    known = _REQUEST_HEADS.get(block)
    if known is None:
        known = {}
        for line in block.decode("utf-8").split("\n"):
            name, _, value = line.partition(":")
            known[name.strip().lower()] = value.strip()
        if len(_REQUEST_HEADS) > 1_000:
            _REQUEST_HEADS.clear()
        _REQUEST_HEADS[block] = known
    return dict(known)  # a request's own: a caller may change it


def _address(url: str, root: str, base: str) -> tuple[str, str]:
    """(path after the API root, query) of a request line's URL. A URL under the root the `$batch` came to (what a
    client sends) is cut by hand — what `urlsplit` would make of it (no control characters, no IPv6 brackets to
    check), at a tenth of its cost on a URL it has not seen; any other as `urlsplit` reads it."""
    clean = url.isprintable() and "[" not in url and not _UNCLEAN.intersection(base)
    if clean and url.startswith(base) and base.endswith(root):
        path, _, query = url[len(base) :].partition("#")[0].partition("?")
        return path, query
    split = urlsplit(url)
    path = split.path
    return (path[path.index(root) + len(root) :] if root in path else path.lstrip("/")), split.query


_UNCLEAN = frozenset("[?#")  # in the base: a host `urlsplit` would read otherwise (or check as IPv6)
_QUERIES: dict[str, dict[str, str]] = {}  # query string → its parameters: a run tags every write alike


def _query(text: str) -> dict[str, str]:
    known = _QUERIES.get(text)
    if known is None:
        if len(_QUERIES) > 1_000:
            _QUERIES.clear()
        known = _QUERIES[text] = dict(parse_qsl(text))
    return dict(known)


def _resolve_references(request: Request, created: Mapping[str, str]) -> Request:
    """OData change-set references: `$1` as the URL (or its prefix) and as an `@odata.bind` value names the row an
    earlier request of the same change set created — Microsoft Learn, "Execute batch operations using the Web API"
    (Reference URIs in an operation)."""
    if not created and not request.path.startswith("$"):
        return request  # nothing to resolve (most requests: no references)
    if not request.path.startswith("$") or request.path == "$batch":
        path = request.path
    else:
        reference, sep, rest = request.path[1:].partition("/")
        if reference not in created:
            raise SimError(400, f"Content-ID reference '${reference}' does not name an earlier request.", "0x80060888")
        path = created[reference] + (sep + rest if sep else "")
    body = request.body
    if created and b"@odata.bind" in body:
        document = body_of(request)
        for name, value in document.items():
            if name.endswith("@odata.bind") and isinstance(value, str) and value.startswith("$"):
                if value[1:] not in created:
                    raise SimError(
                        400, f"Content-ID reference '{value}' does not name an earlier request.", "0x80060888"
                    )
                document[name] = "/" + created[value[1:]]
        body = dumps(document).encode("utf-8")
    return replace(request, path=path, body=body)


def _http_part(content_id: str | None, reply: Reply) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    reason = {
        200: "OK",
        201: "Created",
        204: "No Content",
        400: "Bad Request",
        404: "Not Found",
        412: "Precondition Failed",
        429: "Too Many Requests",
    }.get(reply.status, "Status")
    lines += ["", f"HTTP/1.1 {reply.status} {reason}"]
    headers = dict(reply.headers)
    if reply.body is not None:
        headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["", dumps(reply.body) if reply.body is not None else ""]
    return lines
