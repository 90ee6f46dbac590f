"""The thin adapters of a sync run: read a map's rows from both apps in pages (only the columns the map reads),
gather what the transforms need, and write decisions in bulk — Dataverse `$batch` of up to 1,000 operations, each
its own change set with `Prefer: odata.continue-on-error` (one bad row does not sink its batch; Microsoft Learn,
"Execute batch operations using the Web API"), F&O `$batch` likewise; the connectors' HTTP layer keeps at most 52
requests in flight and honours `Retry-After`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.connectors.batch import BatchOperation
from shared.connectors.dataverse import Bind, DataverseClient, WriteMode, lookup_property
from shared.connectors.errors import ConnectorError, ValidationFailed
from shared.connectors.fno import FnoClient
from shared.connectors.http import DEFAULT_MAX_IN_FLIGHT as MAX_IN_FLIGHT
from shared.connectors.odata import Row, row_from
from shared.connectors.wire import literal, loads
from shared.initialsync.plan import Decision, Lookups, Snapshot, Write
from shared.ledger.bulk import load_map
from shared.ledger.tables import Ledger
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap, LookupRef, transform
from shared.registration.plan import ENDPOINT_NAME
from shared.sync.rows import DataverseRows, dataverse_record

log = logging.getLogger("sync.initial")

FNO_PAGE = 10_000  # F&O's server-driven page
DATAVERSE_PAGE = 5_000  # Dataverse's maximum `odata.maxpagesize`
TAG_PREFIX = "bridge:"
# Operations per `$batch`: Dataverse takes up to 1,000 (MAX_OPERATIONS); 500 keeps one request well inside the
# client's 30-second timeout on a busy server, at 2 requests per 1,000 rows.
BATCH_OPERATIONS = int(os.environ.get("SYNC_BATCH_OPERATIONS") or 500)
# A run's Dataverse writes skip the bridge's own webhook steps (and only those): Microsoft Learn, "Bypass custom
# Dataverse logic" — `MSCRM.BypassBusinessLogicExecutionStepIds`; the application user needs the
# prvBypassCustomBusinessLogic privilege. Without it (or with SYNC_BYPASS_OWN_STEPS=false) the writes raise webhooks
# that ingest drops by their tag: correct, but a notification per row written.
BYPASS_HEADER = "MSCRM.BypassBusinessLogicExecutionStepIds"
BYPASS_OWN_STEPS = (os.environ.get("SYNC_BYPASS_OWN_STEPS") or "true").lower() not in ("0", "false", "no")
WEBHOOK_ENDPOINT = os.environ.get("DATAVERSE_WEBHOOK_ENDPOINT_NAME") or ENDPOINT_NAME


async def own_steps(client: DataverseClient, table: str, endpoint_name: str = WEBHOOK_ENDPOINT) -> list[str]:
    """The ids of the bridge's own webhook steps on `table` (registered by `python -m shared.registration`): the
    steps whose handler is its service endpoint and whose message filter names the table. Three reads."""
    filters = client.list(
        "sdkmessagefilters", filter=f"primaryobjecttypecode eq {literal(table)}", select=["sdkmessagefilterid"]
    )
    of_table = {str(f.values["sdkmessagefilterid"]).lower() async for f in filters}
    found = []
    async for endpoint in client.list(
        "serviceendpoints", filter=f"name eq {literal(endpoint_name)}", select=["serviceendpointid"]
    ):
        steps = client.list(
            "sdkmessageprocessingsteps",
            filter=f"_eventhandler_value eq {endpoint.values['serviceendpointid']}",
            select=["sdkmessageprocessingstepid", "_sdkmessagefilterid_value"],
        )
        found += [
            str(step.values["sdkmessageprocessingstepid"])
            async for step in steps
            if str(step.values.get("_sdkmessagefilterid_value") or "").lower() in of_table
        ]
    return found


def dataverse_select(m: TableMap) -> list[str]:
    lookups = {f.dataverse for f in m.fields if f.lookup and f.dataverse}
    company = m.company_field(Side.DATAVERSE)
    if company:
        lookups.add(company)
    names = sorted(m.readable(Side.DATAVERSE))
    return [lookup_property(n) if n in lookups else n for n in names] + ["modifiedon"]


async def read_fno(client: FnoClient, m: TableMap, companies: Sequence[str] = ()) -> list[Snapshot]:
    """A map's F&O rows, `cross-company=true` (the client always asks it). A company-striped map is read company
    by company (`$filter=dataAreaId eq '…'`, the companies at once), as ../shared/reference/fno.md advises for bulk
    reads: each query stays within one company's index, and a company outside the scope is never read."""
    select = sorted(m.readable(Side.FNO))
    field = m.company_field(Side.FNO)
    read_at = datetime.now(UTC)  # a ledger entry saved since may be newer than a row read (F&O ETags tell no order)
    if field is None or not companies:
        return [Snapshot(row.values, row.etag, read_at=read_at) async for row in client.list(m.fno.entity,
                select=select, page_size=FNO_PAGE)]  # fmt: skip

    async def one(code: str) -> list[Snapshot]:
        rows = client.list(m.fno.entity, filter=f"{field} eq {literal(code)}", select=select, page_size=FNO_PAGE)
        return [Snapshot(row.values, row.etag, read_at=read_at) async for row in rows]

    return [row for rows in await asyncio.gather(*(one(c) for c in sorted(set(companies)))) for row in rows]


async def companies_in_scope(
    fno: FnoClient, lookups: Lookups, compiled: CompiledMap, maps: Mapping[str, CompiledMap]
) -> list[str]:
    """The F&O company codes a company-striped map covers: those Dataverse knows, and those the companies map
    reads from F&O (companies a run creates in Dataverse first). Empty: read every company."""
    m = compiled.map
    if m.company is None:
        return []
    codes = {code.lower() for code in lookups.companies.values()}
    company_maps = [c.map for c in maps.values() if c.map.dataverse.entity_set == m.company.table_entity_set]
    for company_map in company_maps:
        field = next((f.fno for f in company_map.fields if f.dataverse == m.company.code and f.fno), None)
        if field is not None:
            async for row in fno.list(company_map.fno.entity, select=[field], page_size=FNO_PAGE):
                if row.values.get(field):
                    codes.add(str(row.values[field]).lower())
    return sorted(codes)


def _snapshot(m: TableMap, row: Row) -> Snapshot:
    record = dataverse_record(row.values)
    row_id = str(record.pop(f"{m.dataverse.table}id", "") or "").lower() or None
    modified = record.pop("modifiedon", None)
    return Snapshot(record, row.etag, row_id, str(modified) if modified else None)


async def read_dataverse(client: DataverseClient, m: TableMap) -> list[Snapshot]:
    rows = client.list(m.dataverse.entity_set, select=dataverse_select(m), page_size=DATAVERSE_PAGE)
    return [_snapshot(m, row) async for row in rows]


@dataclass
class Tracked:
    rows: list[Snapshot]  # every row (no delta link given), or the rows created or changed since it
    deleted: list[str]  # ids of rows deleted since the delta link
    delta_link: str | None  # where to ask next time
    whole: bool = True  # every row was read (no delta link, or one the service no longer knew)


async def read_dataverse_tracked(client: DataverseClient, m: TableMap, delta_link: str | None) -> Tracked:
    """Dataverse with change tracking (Microsoft Learn, "Use change tracking to synchronize data with external
    systems"): `Prefer: odata.track-changes` reads every row and ends with `@odata.deltaLink`; that link, followed
    later, answers only the rows changed since and the deleted ones (`$deletedEntity`), and a new link. Paged as
    any query. A link the service no longer knows (tokens expire) is answered by reading every row again."""
    headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={DATAVERSE_PAGE}"}
    url: str | None = delta_link or m.dataverse.entity_set
    params = None if delta_link else {"$select": ",".join(dataverse_select(m))}
    out = Tracked([], [], None, whole=delta_link is None)
    while url is not None:
        try:
            response = await client.transport.request("GET", url, params=params, headers=headers)
        except ValidationFailed as exc:
            if delta_link is None or out.rows or out.deleted:
                raise
            log.warning("%s: the delta link was refused (%s): reading every row", m.name, exc)
            return await read_dataverse_tracked(client, m, None)
        page = loads(response.content)
        for document in page.get("value", []):
            if str(document.get("@odata.context", "")).endswith("/$deletedEntity"):
                out.deleted.append(str(document.get("id", "")).lower())
            else:
                out.rows.append(_snapshot(m, row_from(document)))
        url, params = page.get("@odata.nextLink"), None
        out.delta_link = page.get("@odata.deltaLink") or out.delta_link
    return out


async def read_dataverse_ids(
    client: DataverseClient, m: TableMap, ids: Sequence[str], per_request: int = 50
) -> list[Snapshot]:
    """Rows by id, `per_request` ids a query (`$filter` on the primary key joined with `or`)."""
    primary = f"{m.dataverse.table}id"
    out: list[Snapshot] = []
    for start in range(0, len(ids), per_request):
        chosen = " or ".join(f"{primary} eq {row_id}" for row_id in ids[start : start + per_request])
        rows = client.list(m.dataverse.entity_set, filter=chosen, select=dataverse_select(m), page_size=DATAVERSE_PAGE)
        out += [_snapshot(m, row) async for row in rows]
    return out


async def gather_lookups(
    client: DataverseClient, ledger: Ledger, compiled: CompiledMap, maps: Mapping[str, CompiledMap]
) -> Lookups:
    """Company codes by company id, and the F&O keys of referenced rows by their Dataverse id (their maps' ledger)."""
    lookups = Lookups()
    m = compiled.map
    if m.company is not None and m.company.dataverse:
        id_column = m.company.table_entity_set.removesuffix("ies") + "yid"  # cdm_companies → cdm_companyid
        async for row in client.list(m.company.table_entity_set, select=[id_column, m.company.code]):
            company_id, code = row.values.get(id_column), row.values.get(m.company.code)
            if company_id and code:
                lookups.companies[str(company_id).lower()] = str(code).upper()
    for name in {f.lookup for f in m.fields if f.lookup and f.lookup in maps}:
        entries, index = await load_map(ledger, name)
        for (side, row_id), text in index.items():
            if side is Side.DATAVERSE and text in entries:
                lookups.fno_keys[(name, row_id)] = entries[text].key
        # Rows the ledger does not know yet (a plan, or rows equal on both sides): their key from their own values.
        referenced = maps[name]
        company = referenced.map.company_field(Side.FNO)
        for snapshot in await read_dataverse(client, referenced.map):
            if snapshot.row_id is None or (name, snapshot.row_id) in lookups.fno_keys:
                continue
            key = transform(referenced, Side.DATAVERSE, snapshot.record, maps, lookups).key
            if len(key) == len(referenced.map.fno.key):
                lookups.fno_keys[(name, snapshot.row_id)] = {
                    k: (str(v).lower() if k == company else v) for k, v in key.items()
                }
    return lookups


class Gate:
    """At most `limit()` holders at once; the limit may change while it is in use (a server's hint)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._active = 0
        self._changed = asyncio.Condition()

    @property
    def active(self) -> int:
        return self._active

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < max(1, self._limit()))
            self._active += 1

    async def __aexit__(self, *_: object) -> None:
        async with self._changed:
            self._active -= 1
            self._changed.notify_all()


@dataclass
class Failure:
    decision: Decision
    write: Write
    request: str
    message: str
    status: int | None

    @property
    def concurrent(self) -> bool:
        """412: the target changed since the run read it, or a row with this key (or the id the run gave it: an
        earlier attempt of this very write) exists now. Not an error: live sync has it, or the next run links it."""
        return self.status == 412


class PartlyWritten(Exception):
    """Some `$batch`es of a write raised (`cause`, the first): `unsent` are the decisions with a write in one of them
    (landed or not, nobody can tell: taken as not written); every other decision was answered — written, or one of
    `failures`."""

    def __init__(self, cause: Exception, failures: list[Failure], unsent: list[Decision]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.failures = failures
        self.unsent = unsent


class Writer:
    """Writes decisions into both apps in bulk; returns the failures (a failed write fails its whole decision)."""

    def __init__(
        self, dataverse: DataverseClient, fno: FnoClient, maps: Mapping[str, CompiledMap], tag: str, in_flight: int = 4
    ) -> None:
        # `$batch`es at once per app (each is up to 1,000 writes of server time): Dataverse's recommendation when
        # it sends one (x-ms-dop-hint; Microsoft Learn, "Send parallel requests"), never past the 52 requests a user
        # may have in flight.
        hint = dataverse.transport
        self._gates = {
            Side.DATAVERSE: Gate(lambda: min(hint.dop_hint or in_flight, MAX_IN_FLIGHT)),
            Side.FNO: Gate(lambda: in_flight),
        }
        self.dataverse = dataverse
        self.fno = fno
        self.rows = DataverseRows(dataverse, {n: c.map for n, c in maps.items()})
        self.tag = tag
        self.bypass = BYPASS_OWN_STEPS
        self._steps: dict[str, list[str]] = {}
        # A run binds the same few rows (a company, a group, a currency) thousands of times: each worked out once.
        self._binds: dict[tuple[str, str, tuple[tuple[str, Any], ...]], Bind | None] = {}

    async def _bypass(self, table: str) -> dict[str, str]:
        """The header that keeps the bridge's own webhooks quiet for a write into `table` (none if it has none)."""
        if not self.bypass:
            return {}
        if table not in self._steps:
            try:
                self._steps[table] = await own_steps(self.dataverse, table)
            except ConnectorError as exc:  # may not read step registrations: writes raise (tagged) webhooks
                log.warning("the bridge's webhook steps on %s could not be read (%s): not bypassed", table, exc)
                self._steps[table] = []
        ids = self._steps[table]
        return {BYPASS_HEADER: ",".join(ids)} if ids else {}

    async def _bind(self, ref: LookupRef | None) -> Bind | None:
        if ref is None:
            return None
        try:
            known = (ref.map, ref.entity_set, tuple(ref.key.items()))
            hash(known)
        except TypeError:  # a key value that is not hashable (none of today's): not remembered
            return await self.rows.bind(ref)
        if known not in self._binds:
            self._binds[known] = await self.rows.bind(ref)
        return self._binds[known]

    async def _dataverse_operation(self, m: TableMap, write: Write) -> BatchOperation:
        binds = {name: await self._bind(ref) for name, ref in write.lookups.items()}
        key: Any = write.row_id or await self.rows.key(m, write.key)
        bypass = await self._bypass(m.dataverse.table)  # sent after the operation's own headers
        if write.delete == "delete":  # a linked row deleted in F&O (as live sync applies a delete)
            path = self.dataverse.path(m.dataverse.entity_set, key) + f"?tag={self.tag}"
            return BatchOperation("DELETE", path, None, {"If-Match": write.if_match or "*", **bypass})
        if write.delete == "deactivate":
            values: Mapping[str, Any] = {"statecode": 1, "statuscode": 2}
            return self.dataverse.write_operation(
                m.dataverse.entity_set, key, values, if_match=write.if_match or "*", tag=self.tag, headers=bypass
            )
        if write.create:
            return self.dataverse.write_operation(
                m.dataverse.entity_set, key, write.values, lookups=binds, mode=WriteMode.CREATE, tag=self.tag,
                headers=bypass,
            )  # fmt: skip
        return self.dataverse.write_operation(
            m.dataverse.entity_set, key, write.values, lookups=binds, if_match=write.if_match or "*", tag=self.tag,
            headers=bypass,
        )  # fmt: skip

    def _fno_operation(self, m: TableMap, write: Write) -> BatchOperation:
        if write.delete:  # a linked row deleted in Dataverse (the map's `delete: delete`)
            path = self.fno.path(m.fno.entity, write.key) + "?cross-company=true"
            return BatchOperation("DELETE", path, None, {"If-Match": write.if_match or "*"})
        if write.create:
            return self.fno.create_operation(m.fno.entity, write.key, write.values)
        return self.fno.update_operation(m.fno.entity, write.key, write.values, write.if_match or "*")

    async def write(self, m: TableMap, decisions: Sequence[Decision]) -> list[Failure]:
        """Every operation is encoded first (encoding may read a bound row and fail: then nothing was sent, and the
        caller's putting the ledger back is exact), then the `$batch`es go out together; every batch settles before
        a failure is raised, so nothing lands after the caller put the ledger back. A batch that raised (no answer:
        throttled past its retries, an app down) raises `PartlyWritten`, naming the decisions it carried and the
        failures the answered batches reported: the decisions of the batches that did land are written."""
        encoded: dict[Side, list[tuple[Side, Decision, Write, BatchOperation]]] = {side: [] for side in Side}
        for decision in decisions:
            for w in decision.writes:
                op = await self._dataverse_operation(m, w) if w.into is Side.DATAVERSE else self._fno_operation(m, w)
                encoded[w.into].append((w.into, decision, w, op))
        batches = [
            ops[i : i + BATCH_OPERATIONS] for ops in encoded.values() for i in range(0, len(ops), BATCH_OPERATIONS)
        ]
        answers = await asyncio.gather(*(self._send(batch) for batch in batches), return_exceptions=True)
        failures: list[Failure] = []
        unsent: dict[int, Decision] = {}
        cause: Exception | None = None
        for batch, answer in zip(batches, answers, strict=True):
            if isinstance(answer, Exception):
                cause = cause or answer
                unsent.update((id(d), d) for _, d, _, _ in batch)
            elif isinstance(answer, BaseException):
                raise answer  # cancelled: nothing to sort out
            else:
                failures += answer
        if cause is not None:
            raise PartlyWritten(cause, [f for f in failures if id(f.decision) not in unsent], list(unsent.values()))
        return failures

    async def _send(self, batch: list[tuple[Side, Decision, Write, BatchOperation]]) -> list[Failure]:
        client = self.dataverse if batch[0][0] is Side.DATAVERSE else self.fno
        async with self._gates[batch[0][0]]:
            results = await client.batch([j[3] for j in batch], atomic=False, continue_on_error=True)
            if self.bypass and batch[0][0] is Side.DATAVERSE and results and all(r.status == 403 for r in results):
                # Refused whole: the application user lacks prvBypassCustomBusinessLogic. Write without the bypass.
                log.warning("bypassing the bridge's own webhook steps was refused (403): writes raise webhooks")
                self.bypass = False
                plain = [dataclasses.replace(j[3], headers={k: v for k, v in j[3].headers.items()
                                                            if k != BYPASS_HEADER}) for j in batch]  # fmt: skip
                results = await client.batch(plain, atomic=False, continue_on_error=True)
        failures = []
        for (_, decision, write, op), result in zip(batch, results, strict=True):
            if (
                write.create
                and write.into is Side.DATAVERSE
                and result.status == 412
                and "duplicate key" in str(result.error)
            ):
                continue  # the id the run gave it is taken: an earlier attempt (a retried batch, a crash) made it
            if write.delete and result.status == 404:
                continue  # gone already (an earlier attempt, or a person)
            if not result.ok:
                error = result.error
                message = error.message if error is not None else f"status {result.status}"
                request = f"{op.method} {op.path.split('?')[0]} {op.body}"
                failures.append(Failure(decision, write, request, message, result.status))
        return failures
