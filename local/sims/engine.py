"""One OData engine for both simulators. The apps differ only in their `Dialect`: URL keys, ETag format, error
body, upsert rules, lookups, company visibility and the change notifications they send.

The core is synchronous over SQLite (`execute`), so a `$batch` change set is atomic (a savepoint in the request's
transaction); the aiohttp shell adds auth, faults, the admin API and hands committed changes to the dialect's
notifier.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import web

from local.sims.delivery import Chaos, Deliverer
from local.sims.schema import Column, ColumnType, SchemaChangeError, Table, customize, describe, per_table
from local.sims.store import Store, StoredRow
from shared.connectors.wire import dumps, loads

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SEGMENT = re.compile(r"^(?P<set>[A-Za-z_][\w]*)(?:\((?P<key>.*)\))?$")
_TEXTS = (ColumnType.TEXT, ColumnType.MEMO)  # (a member of an enum is a Python-level lookup in 3.11)


_TEXT_LIMITS: dict[int, tuple[Table, tuple[Column, ...], dict[str, int]]] = {}


def _text_limits(table: Table) -> dict[str, int]:
    """Text column → the longest value it takes."""
    return {
        name: column.max_length
        for name, column in table.columns.items()
        if column.type in _TEXTS and column.max_length is not None
    }


class SimError(Exception):
    def __init__(self, status: int, message: str, code: str = "", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Change:
    """One committed write, as the app's change notifications describe it."""

    table: Table
    operation: str  # create | update | delete
    before: StoredRow | None
    after: StoredRow | None
    submitted: list[str]
    tag: str | None
    user: str
    bypass: frozenset[str] = frozenset()  # step ids, and "customsync" / "customasync": logic this write skips


def bypassed(request: Request) -> frozenset[str]:
    """The custom logic a Dataverse write asks to skip — Microsoft Learn, "Bypass custom Dataverse logic":
    `MSCRM.BypassBusinessLogicExecutionStepIds` (step registration ids, comma-separated),
    `MSCRM.BypassBusinessLogicExecution` (`CustomSync`, `CustomAsync`) and the older
    `MSCRM.BypassCustomPluginExecution: true` (synchronous logic)."""
    h = request.headers
    asked = (
        h.get("mscrm.bypassbusinesslogicexecutionstepids", ""),
        h.get("mscrm.bypassbusinesslogicexecution", ""),
        h.get("mscrm.bypasscustompluginexecution", ""),
    )
    known = _BYPASSED.get(asked)  # a bulk write sends the same headers with every operation
    if known is None:
        steps, logic, plugins = asked
        found = {s.strip().lower() for s in steps.split(",") if s.strip()}
        found |= {s.strip().lower() for s in logic.split(",") if s.strip()}
        if plugins.lower() == "true":
            found.add("customsync")
        if len(_BYPASSED) > 1_000:
            _BYPASSED.clear()
        known = _BYPASSED[asked] = frozenset(found)
    return known


_BYPASSED: dict[tuple[str, str, str], frozenset[str]] = {}


@dataclass
class Request:
    method: str
    path: str  # after the API root, e.g. "accounts(accountnumber='A1')"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    user: str
    base: str = ""  # the API root as the caller reached it: scheme://host/api/data/v9.2/
    # The body as parsed by `body_of`, once: a write's checks and the write itself each ask for it. Not an init
    # field, so a copy with another body (`dataclasses.replace`) parses its own.
    document: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)


class Dialect(Protocol):
    name: str
    root: str  # "/api/data/v9.2/" or "/data/"
    deliverer: Deliverer

    def etag(self, row: StoredRow) -> str: ...
    def error_body(self, error: SimError) -> Any: ...
    def locate(self, table: Table, key: dict[str, Any] | str, request: Request) -> StoredRow | None: ...
    def present(self, table: Table, row: StoredRow) -> dict[str, Any]: ...
    def visible(self, table: Table, row: StoredRow, request: Request) -> bool: ...
    def create(self, table: Table, request: Request, changes: list[Change]) -> Reply: ...
    def patch(self, table: Table, key: dict[str, Any] | str, request: Request, changes: list[Change]) -> Reply: ...
    def notify(self, changes: list[Change]) -> None: ...


class GuidLiteral(str):
    """An unquoted GUID in a key segment (`_x_value=<guid>`), unlike the quoted text `'<guid>'`."""


def parse_key(text: str) -> dict[str, Any] | str:
    """`(guid)` → the id; `(a='x',b=1)` → named values ('' unescaped, GUIDs lower-cased)."""
    text = unquote(text).strip()
    if _GUID.match(text):
        return text.lower()
    values: dict[str, Any] = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        name = text[i:eq].strip()
        j = eq + 1
        if j < len(text) and text[j] == "'":
            k, chars = j + 1, []
            while k < len(text):
                if text[k] == "'" and k + 1 < len(text) and text[k + 1] == "'":
                    chars.append("'")
                    k += 2
                elif text[k] == "'":
                    break
                else:
                    chars.append(text[k])
                    k += 1
            values[name] = "".join(chars)
            j = k + 1
        else:
            end = text.find(",", j)
            end = len(text) if end < 0 else end
            raw = text[j:end].strip()
            values[name] = GuidLiteral(raw.lower()) if _GUID.match(raw) else loads(raw) if raw else None
            j = end
        i = text.find(",", j)
        if i < 0:
            break
        i += 1
    if not values:
        raise SimError(400, f"malformed key segment ({text})")
    return values


@dataclass
class Faults:
    throttle_share: float = 0.0
    retry_after: float = 1.0
    error_share: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    remaining: int | None = None  # how many more faults to inject; None: no limit


class Simulator:
    def __init__(self, dialect: Dialect, tables: list[Table], store: Store, token: str) -> None:
        self.dialect = dialect
        self.tables = {t.entity_set: t for t in tables}
        self.by_name = {t.name: t for t in tables}
        self.store = store
        self.token = token
        self.faults = Faults()
        self.writes: dict[str, int] = {}
        self.requests = 0
        self.traceparents: deque[str] = deque(maxlen=500)  # W3C trace context of the writes received (tests)
        self.dop_hint = 4  # the Dataverse dialect's x-ms-dop-hint (0: not sent)
        self.rows_read = 0  # rows answered by collection reads (GETs of a table): what a bulk reader cost
        # A filtered or ordered query's rows, kept while nothing is written, so that paging through it costs a page
        # each, not the whole table each (the apps answer from indexes); emptied by schema customizations too.
        self.query_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.faults_served = 0
        self._random = random.Random(7)

    # --- the synchronous core -------------------------------------------------------------------------------------

    def table(self, entity_set: str) -> Table:
        table = self.tables.get(entity_set)
        if table is None:
            raise SimError(404, f"Resource not found for the segment '{entity_set}'.", "0x8006088a")
        return table

    def execute(self, request: Request, changes: list[Change]) -> Reply:
        service = getattr(self.dialect, "service", None)  # the app's own documents: $metadata, definitions…
        if service is not None and (reply := service(request)) is not None:
            return reply  # type: ignore[no-any-return]
        m = _SEGMENT.match(request.path)
        if m is None:
            raise SimError(404, f"Resource not found for the segment '{request.path}'.", "0x8006088a")
        table = self.table(m.group("set"))
        key_text = m.group("key")
        method = request.method
        before = len(changes)
        if key_text is None:
            if method == "GET":
                return self._list(table, request)
            if method == "POST":
                self._check_lengths(table, request)
                reply = self.dialect.create(table, request, changes)
            else:
                raise SimError(405, f"{method} is not supported on a collection")
        else:
            key = parse_key(key_text)
            if method == "GET":
                return self._get(table, key, request)
            if method == "PATCH":
                self._check_lengths(table, request)
                reply = self.dialect.patch(table, key, request, changes)
            elif method == "DELETE":
                reply = self._delete(table, key, request, changes)
            else:
                raise SimError(405, f"{method} is not supported on a row")
        self.writes[table.entity_set] = self.writes.get(table.entity_set, 0) + (len(changes) - before)
        return reply

    def _check_lengths(self, table: Table, request: Request) -> None:
        """A text value longer than its column's length is refused whole, as both apps do (nothing is cut)."""
        limits = per_table(_TEXT_LIMITS, table, _text_limits)
        for name, value in body_of(request).items():
            if not isinstance(value, str):  # first: most values are not text
                continue
            limit = limits.get(name)
            if limit is not None and len(value) > limit:
                hook = getattr(self.dialect, "length_error", None)
                if hook is not None:
                    raise hook(table, name, limit)
                raise SimError(400, f"The value of {table.name}.{name} is longer than its {limit} characters.")

    # --- reads (local/sims/reads.py) ------------------------------------------------------------------------------

    def _get(self, table: Table, key: dict[str, Any] | str, request: Request) -> Reply:
        from local.sims.reads import read_row

        return read_row(self, table, key, request)

    def _list(self, table: Table, request: Request) -> Reply:
        from local.sims.reads import read_rows

        return read_rows(self, table, request)

    def _link(self, path: str, query: Mapping[str, str]) -> str:
        from urllib.parse import urlencode

        return f"{self.base_url}{path}?{urlencode(query)}"

    base_url = ""

    def _delete(self, table: Table, key: dict[str, Any] | str, request: Request, changes: list[Change]) -> Reply:
        row = self.dialect.locate(table, key, request)
        if row is None or not self.dialect.visible(table, row, request):
            raise _not_found(table, key)
        check_if_match(self.dialect, row, request)
        self.store.delete(row)
        changes.append(
            Change(table, "delete", row, None, [], request.query.get("tag"), request.user, bypassed(request))
        )
        return Reply(204)

    # --- $batch (local/sims/batch.py) -----------------------------------------------------------------------------

    def batch(self, request: Request, changes: list[Change]) -> tuple[str, bytes]:
        from local.sims.batch import run_batch

        return run_batch(self, request, changes)

    def error_reply(self, error: SimError) -> Reply:
        return Reply(error.status, self.dialect.error_body(error), {"Content-Type": "application/json"} | error.headers)

    # --- the aiohttp shell ----------------------------------------------------------------------------------------

    def app(self, admin: web.RouteTableDef | None = None) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        root = self.dialect.root
        app.router.add_route("*", root + "{tail:.*}", self._http)
        app.router.add_post("/_admin/faults", self._set_faults)
        app.router.add_delete("/_admin/faults", self._clear_faults)
        app.router.add_post("/_admin/delivery", self._set_delivery)
        app.router.add_delete("/_admin/delivery", self._clear_delivery)
        app.router.add_post("/_admin/reset", self._reset)
        app.router.add_get("/_admin/stats", self._stats)
        app.router.add_get("/_admin/tables/{entity_set}", self._dump)
        app.router.add_post("/_admin/schema", self._customize)
        app.router.add_get("/_admin/schema/{entity_set}", self._schema)
        if admin is not None:
            app.router.add_routes(admin)
        return app

    async def _http(self, request: web.Request) -> web.Response:
        response = await self._serve(request)
        if self.dialect.name == "dataverse" and self.dop_hint:
            # Dataverse's recommended degree of parallelism for this user, on every answer (Microsoft Learn,
            # "Send parallel requests": x-ms-dop-hint).
            response.headers["x-ms-dop-hint"] = str(self.dop_hint)
        return response

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.method != "GET" and "traceparent" in request.headers:
            self.traceparents.append(request.headers["traceparent"])
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._json(self.error_reply(SimError(401, "Bearer token missing or invalid.", "0x80072560")))
        fault = await self._fault()
        if fault is not None:
            return self._json(fault)
        self.base_url = f"{request.scheme}://{request.host}{self.dialect.root}"
        inner = Request(
            request.method,
            unquote(request.path[len(self.dialect.root) :]),
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
            request.headers.get("x-sim-user") or str(uuid.uuid5(uuid.NAMESPACE_URL, self.token)),
            self.base_url,
        )
        changes: list[Change] = []
        if inner.path == "$batch" and inner.method == "POST":
            try:
                content_type, body = self.batch(inner, changes)
            except SimError as exc:
                return self._json(self.error_reply(exc))
            self.dialect.notify(changes)
            return web.Response(status=200, body=body, headers={"Content-Type": content_type, "OData-Version": "4.0"})
        try:
            with self.store.transaction():
                reply = self.execute(inner, changes)
        except SimError as exc:
            return self._json(self.error_reply(exc))
        self.dialect.notify(changes)
        if inner.method == "GET" and isinstance(reply.body, dict) and isinstance(reply.body.get("value"), list):
            self.rows_read += len(reply.body["value"])
        return self._json(reply)

    async def _fault(self) -> Reply | None:
        f = self.faults
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if f.remaining is not None and f.remaining <= 0:
            return None
        draw = self._random.random()
        reply = None
        if draw < f.throttle_share:
            reply = self.error_reply(
                SimError(
                    429,
                    "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                    "0x80072322",
                    {"Retry-After": f"{f.retry_after:g}"},
                )
            )
        elif draw < f.throttle_share + f.error_share:
            if f.error_status in (502, 504):
                reply = Reply(
                    f.error_status, "<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}
                )
            else:
                reply = self.error_reply(SimError(f.error_status, "The service is temporarily unavailable."))
        if reply is not None:
            self.faults_served += 1
            if f.remaining is not None:
                f.remaining -= 1
        return reply

    @staticmethod
    def _json(reply: Reply) -> web.Response:
        headers = {"OData-Version": "4.0"} | reply.headers
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        if isinstance(reply.body, str):
            return web.Response(status=reply.status, text=reply.body, headers=headers)
        headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
        return web.Response(status=reply.status, body=dumps(reply.body).encode("utf-8"), headers=headers)

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults = Faults(**body)
        return web.json_response({"faults": body})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults = Faults()
        return web.json_response({"faults": None})

    async def _set_delivery(self, request: web.Request) -> web.Response:
        """Webhook delivery chaos: {"duplicate": true, "shuffle": true, "window_seconds": 0.5, "drop_share": 0.1}."""
        try:
            chaos = Chaos(**await request.json())
            if not 0.0 <= float(chaos.drop_share) <= 1.0:
                raise ValueError("drop_share is a share: between 0 and 1")
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.dialect.deliverer.chaos = chaos
        return web.json_response({"delivery": vars(self.dialect.deliverer.chaos)})

    async def _clear_delivery(self, request: web.Request) -> web.Response:
        self.dialect.deliverer.chaos = Chaos()
        return web.json_response({"delivery": None})

    async def _reset(self, request: web.Request) -> web.Response:
        self.store.reset()
        self.writes.clear()
        self.faults = Faults()
        return web.json_response({"reset": True})

    async def _stats(self, request: web.Request) -> web.Response:
        faults = {"remaining": self.faults.remaining, "served": self.faults_served}
        return web.json_response(
            {
                "writes": self.writes,
                "requests": self.requests,
                "rows_read": self.rows_read,
                "faults": faults,
                "traceparents": list(self.traceparents),
            }
            | self.extra_stats()
        )

    def extra_stats(self) -> dict[str, Any]:
        d = self.dialect.deliverer
        return {"webhooks": {"sent": d.sent, "failed": d.failed, "pending": d.pending, "dropped": d.dropped}}

    async def _customize(self, request: web.Request) -> web.Response:
        """`{"entity_set": "accounts", "add": [{"name", "type", "max_length", "options", "enum", "target"}],
        "remove": ["fax"], "alter": [{"name": "name", "max_length": 20}]}`: the live schema changes, and with it
        validation, length checks and the metadata the app publishes."""
        self.query_cache.clear()
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body must be JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("entity_set"), str):
            return web.json_response({"error": "give {entity_set, add?, remove?, alter?}"}, status=400)
        table = self.tables.get(body["entity_set"])
        if table is None:
            return web.json_response({"error": f"no entity set {body['entity_set']!r}"}, status=404)
        try:
            customize(table, body)
        except SchemaChangeError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.schema_changed()
        return web.json_response(describe(table))

    def schema_changed(self) -> None:
        """Hook: a dialect that caches anything derived from the schema drops it here."""
        hook = getattr(self.dialect, "schema_changed", None)
        if hook is not None:
            hook()

    async def _schema(self, request: web.Request) -> web.Response:
        table = self.tables.get(request.match_info["entity_set"])
        if table is None:
            return web.json_response({"error": "no such table"}, status=404)
        return web.json_response(describe(table))

    async def _dump(self, request: web.Request) -> web.Response:
        table = self.tables.get(request.match_info["entity_set"])
        if table is None:
            return web.json_response({"error": "no such table"}, status=404)
        rows = [self.dialect.present(table, r) for r in self.store.all(table.entity_set)]
        return web.Response(body=dumps({"value": rows}).encode(), content_type="application/json")


def _not_found(table: Table, key: dict[str, Any] | str) -> SimError:
    if isinstance(key, str):
        return SimError(404, f"{table.name} With Id = {key} Does Not Exist", "0x80040217")
    return SimError(404, f"A record with the specified key values does not exist in {table.name} entity", "0x80040217")


def check_if_match(dialect: Dialect, row: StoredRow, request: Request) -> None:
    wanted = request.headers.get("if-match")
    if wanted and wanted != "*" and wanted != dialect.etag(row):
        # "Web service error codes": ConcurrencyVersionMismatch 0x80060882. (An old example in "Perform conditional
        # operations using the Web API" shows an empty code; today's service fills it.)
        raise SimError(
            412, "The version of the existing record doesn't match the RowVersion property provided.", "0x80060882"
        )


def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON object (parsed once per request: see `Request.document`)."""
    if request.document is not None:
        return request.document
    if not request.body.strip():
        return {}
    try:
        document = loads(request.body)
    except ValueError as exc:
        raise SimError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SimError(400, "The request body must be a JSON object.")
    request.document = document
    return document
