"""The Dataverse simulator: Web API v9.2 semantics at `/api/data/v9.2/`, and RemoteExecutionContext webhooks sent
per the `serviceendpoints` / `sdkmessageprocessingsteps` / `sdkmessageprocessingstepimages` rows written to it.

`python -m local.sims.dataverse [--port 7301] [--db FILE] [--seed]`
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from local.sims import dataverse_metadata as metadata
from local.sims.dataverse_webhooks import BUSINESS_UNIT_ID, MESSAGES, ORGANIZATION_ID, SIZE_LIMIT, DataverseWebhooks
from local.sims.delivery import Deliverer
from local.sims.engine import (
    Change,
    GuidLiteral,
    Reply,
    Request,
    SimError,
    body_of,
    bypassed,
    check_if_match,
    parse_key,
)
from local.sims.schema import Column, ColumnType, Table, per_table
from local.sims.store import Store, StoredRow, Taken, key_text

SYSTEM_PROPERTIES = ("versionnumber", "createdon", "modifiedon")
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
_LOOKUP, _CHOICE = ColumnType.LOOKUP, ColumnType.CHOICE  # per property of every write (enum members cost a call)


class _Plan(NamedTuple):
    """What a write needs to know of a table's columns, worked out together (one check per write that they are
    still the table's columns, not one per property)."""

    plain: dict[str, bool]  # columns a write sets by their own name (not the lookups, not the row id) → a choice?
    navigations: dict[str, tuple[str, str]]  # single-valued navigation property → (column, target entity set)
    lookups: dict[str, str]  # lookup property (`_<name>_value`) → column


_PLANS: dict[int, tuple[Table, tuple[Column, ...], _Plan]] = {}


def _plan(table: Table) -> _Plan:
    return per_table(_PLANS, table, _build_plan)


def _build_plan(table: Table) -> _Plan:
    plain = {
        name: column.type is _CHOICE
        for name, column in table.columns.items()
        if column.type is not _LOOKUP and name != table.primary_id
    }
    navigations: dict[str, tuple[str, str]] = {}
    for column in table.columns.values():
        for navigation, target in column.navigation_properties().items():
            navigations.setdefault(navigation, (column.name, target))  # the first column naming it wins
    lookups = {c.lookup_property: c.name for c in table.columns.values() if c.type is ColumnType.LOOKUP}
    return _Plan(plain, navigations, lookups)


class DataverseDialect(DataverseWebhooks):
    name = "dataverse"
    root = "/api/data/v9.2/"
    type_namespace = "Microsoft.Dynamics.CRM"
    supports_skip = False  # Microsoft Learn, "Page results": Dataverse doesn't support $skip

    def __init__(self, store: Store, organization: str = "sim.crm.dynamics.com") -> None:
        self.store = store
        self.organization = organization
        self.deliverer = Deliverer()
        self.tables: dict[str, Table] = {}
        self.virtual: dict[str, Table] = {}  # F&O entity → its virtual table: definitions only (`virtual_tables`)
        self.by_name: dict[str, Table] = {}
        self.size_limit = SIZE_LIMIT
        self._bound: dict[str, tuple[tuple[Any, ...], str]] = {}  # @odata.bind path → (as of, row id)

    def bind(self, tables: list[Table]) -> None:
        self.tables = {t.entity_set: t for t in tables}
        self.by_name = {t.name: t for t in tables}

    def etag(self, row: StoredRow) -> str:
        return f'W/"{row.version}"'

    def error_body(self, error: SimError) -> Any:
        return {"error": {"code": error.code, "message": error.message}}

    def length_error(self, table: Table, column: str, max_length: int) -> SimError:
        # Microsoft Learn, "Web service error codes" (StringLengthTooLong, 0x80044331).
        return SimError(
            400,
            f"A validation error occurred. The length of the '{column}' attribute of the '{table.name}' entity "
            f"exceeded the maximum allowed length of '{max_length}'.",
            "0x80044331",
        )

    def locate(self, table: Table, key: dict[str, Any] | str, request: Request) -> StoredRow | None:
        columns = self.key_columns(table, key)
        if isinstance(columns, str):
            return self.store.get(table.entity_set, columns)
        return self.store.find(table.entity_set, key_text(columns, table.key))

    def key_columns(self, table: Table, key: dict[str, Any] | str) -> dict[str, Any] | str:
        """A URL key as column values (or the row id). A lookup column in an alternate key is named by its lookup
        property, `_<name>_value`, never by its own name — Microsoft Learn, "Use an alternate key to reference a
        record". `accountid=<guid>` names the primary key."""
        if isinstance(key, str):
            return key
        if table.primary_id and list(key) == [table.primary_id]:
            return str(key[table.primary_id]).lower()
        lookups = _plan(table).lookups
        columns: dict[str, Any] = {}
        for name, value in key.items():
            column = lookups.get(name)
            if column is not None and not isinstance(value, GuidLiteral):  # a lookup's key value is an Edm.Guid
                raise SimError(400, "Bad Request - Error in query syntax.", "0x80060888")
            if column is None and name in table.columns and name not in lookups.values():
                column = name
            if column is None:
                break
            columns[column] = str(value) if isinstance(value, GuidLiteral) else value
        else:
            if sorted(columns) == sorted(table.key):
                return columns
        entity_type = f"Microsoft.Dynamics.CRM.{table.name}"
        raise SimError(
            400,
            f"The key in the request URI is not valid for resource '{entity_type}'. Ensure that the names and "
            f"number of key properties match the declared or alternate key properties for the resource "
            f"'{entity_type}'.",
            "0x80060888",
        )

    def service(self, request: Request) -> Reply | None:
        """What Dataverse publishes about itself: `$metadata`, `EntityDefinitions…`, `WhoAmI` (None: not one)."""
        base = request.base or f"https://{self.organization}{self.root}"
        if request.path == "$metadata" and request.method == "GET":
            return Reply(200, metadata.csdl(self.tables), {"Content-Type": "application/xml"})
        if request.path in ("WhoAmI", "WhoAmI()") and request.method == "GET":
            # Microsoft Learn, "WhoAmI Function": BusinessUnitId, UserId, OrganizationId
            return Reply(
                200,
                {
                    "@odata.context": f"{base}$metadata#{metadata.CRM}.WhoAmIResponse",
                    "BusinessUnitId": BUSINESS_UNIT_ID,
                    "UserId": request.user,
                    "OrganizationId": ORGANIZATION_ID,
                },
            )
        if request.path.startswith("EntityDefinitions"):
            if request.method != "GET":
                raise SimError(405, "The simulator's table definitions change through POST /_admin/schema only.")
            try:
                definitions = metadata.Definitions(self.tables, base, self.virtual)
                return Reply(200, definitions.serve(request.path, request.query))
            except metadata.MetadataError as exc:
                raise SimError(exc.status, exc.message, exc.code) from None
        return None

    def property_names(self, table: Table) -> set[str]:
        """Columns as the Web API names them (a lookup as `_<name>_value`), the primary key and system columns."""
        names = {c.lookup_property for c in table.columns.values()} | set(SYSTEM_PROPERTIES)
        return names | ({table.primary_id} if table.primary_id else set())

    def annotate(self, table: Table, document: dict[str, Any], wanted: str) -> dict[str, Any]:
        """`Prefer: odata.include-annotations="*"` (or a named annotation): formatted values of choices and
        lookups, and a lookup's table and navigation property — Microsoft Learn, "Formatted values" and
        "Lookup property data" in "Query data using the Web API"."""

        def asked(annotation: str) -> bool:
            return any(w == "*" or w == annotation or (w.endswith(".*") and annotation.startswith(w[:-1]))
                       for w in wanted.split(","))  # fmt: skip

        out = dict(document)
        for column in table.columns.values():
            prop = column.lookup_property
            value = document.get(prop)
            if value is None:
                continue
            formatted = None
            if column.type is ColumnType.LOOKUP:
                target = self.tables.get(column.target or "")
                row = self.store.get(column.target or "", str(value)) if target else None
                if asked(LOOKUP_TABLE) and target is not None:
                    out[f"{prop}@{LOOKUP_TABLE}"] = target.name
                if asked(NAVIGATION) and column.navigation_properties():
                    out[f"{prop}@{NAVIGATION}"] = next(iter(column.navigation_properties()))
                if row is not None and target is not None:
                    formatted = row.data.get(target.primary_name or "") or row.data.get("name")
            elif column.type is ColumnType.CHOICE:
                formatted = column.labels.get(value, str(value))
            elif column.type is ColumnType.BOOLEAN:
                formatted = "Yes" if value else "No"
            if formatted is not None and asked(FORMATTED):
                out[f"{prop}@{FORMATTED}"] = str(formatted)
        return out

    def visible(self, table: Table, row: StoredRow, request: Request) -> bool:
        return True

    def present(self, table: Table, row: StoredRow) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": self.etag(row)}
        for name, value in row.data.items():
            column = table.column(name)
            if column is not None:  # a column removed by a customization is no longer served
                out[column.lookup_property] = value
        if table.primary_id:
            out[table.primary_id] = row.id
        out["versionnumber"] = row.version
        out["createdon"] = row.created[:19] + "Z"
        out["modifiedon"] = row.modified[:19] + "Z"
        return out

    # --- writes ---------------------------------------------------------------------------------------------------

    def _accept(self, table: Table, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The body as column values: unknown properties refused, lookups resolved (they must exist)."""
        data: dict[str, Any] = {}
        plain, navigations, _ = _plan(table)
        for prop, value in body.items():
            choice = plain.get(prop)
            if choice is not None:  # a column of its own (not a lookup, not the id): most properties of a write
                if choice and value is not None and not isinstance(value, int):
                    raise SimError(
                        400, f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.", "0x80060888"
                    )
                data[prop] = value
                continue
            if prop.endswith("@odata.bind"):
                navigation = prop[: -len("@odata.bind")]
                found = navigations.get(navigation)  # (column, target entity set)
                if found is None:
                    raise SimError(
                        400,
                        f"An undeclared property '{navigation}' which only has property annotations in the payload "
                        "but no property value was found in the payload. In OData, only declared navigation "
                        "properties and declared named streams can be represented as properties without values.",
                        "0x80060888",
                    )
                name, target = found
                data[name] = None if value is None else self._resolve_bind(str(value), target)
                continue
            if prop.startswith("@") or prop == table.primary_id:
                continue
            column = table.column(prop)
            if column is None or column.type is _LOOKUP:
                raise SimError(
                    400,
                    f"Could not find a property named '{prop}' on type 'Microsoft.Dynamics.CRM.{table.name}'.",
                    "0x80060888",
                )
            if value is not None and column.type is _CHOICE and not isinstance(value, int):
                raise SimError(
                    400, f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.", "0x80060888"
                )
            data[prop] = value
        return data, list(data)

    def _resolve_bind(self, reference: str, expected_set: str) -> str:
        path = reference.split("/api/data/v9.2/")[-1].lstrip("/")
        entity_set, _, rest = path.partition("(")
        target = self.tables.get(entity_set)
        if target is None or not rest.endswith(")"):
            raise SimError(400, f"Invalid @odata.bind reference '{reference}'.", "0x80060888")
        if expected_set and entity_set != expected_set:
            raise SimError(400, f"'{reference}' does not reference a {expected_set} row.", "0x80060888")
        # A bulk write binds the same few rows (a company, a group) thousands of times: a row found is remembered
        # while nothing in its table was written since (nor rolled back), the same answer the lookup would give.
        generation = (*self.store.generation(entity_set), id(target), tuple(target.key))
        known = self._bound.get(path)
        if known is not None and known[0] == generation:
            return known[1]
        try:
            key = parse_key(rest[:-1])
        except ValueError:  # not a key Dataverse can read: a bad request, not a server error
            raise SimError(400, f"Invalid @odata.bind reference '{reference}'.", "0x80060888") from None
        row = self.locate(target, key, Request("GET", "", {}, {}, b"", ""))
        if row is None:
            shown = key if isinstance(key, str) else ",".join(f"{k}={v}" for k, v in key.items())
            raise SimError(404, f"{target.name} With Id = {shown} Does Not Exist", "0x80040217")
        if len(self._bound) > 10_000:
            self._bound.clear()
        self._bound[path] = (generation, row.id)
        return row.id

    def create(self, table: Table, request: Request, changes: list[Change]) -> Reply:
        body = body_of(request)
        data, submitted = self._accept(table, body)
        row_id = str(body.get(table.primary_id or "") or uuid.uuid4()).lower()
        return self._insert(table, row_id, data, submitted, request, changes, _duplicate)

    def _insert(
        self,
        table: Table,
        row_id: str,
        data: dict[str, Any],
        submitted: list[str],
        request: Request,
        changes: list[Change],
        id_taken: Callable[[], SimError],
    ) -> Reply:
        """A new row. Its id and its alternate key are checked by the insert itself (the store's unique indexes),
        not by a read before it: a bulk create's every row is new. A refused insert is answered as the reads
        before it would have answered: the id taken first (`id_taken`), then the key."""
        data.setdefault("statecode", 0)
        data.setdefault("statuscode", 1)
        key = key_text(data, table.key) if all(k in data for k in table.key) else json.dumps(["id", row_id])
        try:
            row = self.store.insert(table.entity_set, row_id, key, data)
        except Taken:
            if self.store.get(table.entity_set, row_id) is not None:
                raise id_taken() from None
            if self.store.find(table.entity_set, key) is not None:
                raise SimError(
                    412,
                    "A record that has the attribute values "
                    f"{', '.join(str(data.get(k)) for k in table.key)} already exists.",
                    "0x80060892",
                ) from None
            raise
        changes.append(
            Change(table, "create", None, row, submitted, request.query.get("tag"), request.user, bypassed(request))
        )
        return self._written(table, row, request, created=True)

    def _written(self, table: Table, row: StoredRow, request: Request, created: bool) -> Reply:
        # OData-EntityId names the row at the host the request came to, as any OData service does.
        base = request.base or f"https://{self.organization}{self.root}"
        headers = {"OData-EntityId": f"{base}{table.entity_set}({row.id})", "ETag": self.etag(row)}
        if "return=representation" in request.headers.get("prefer", ""):
            headers["Preference-Applied"] = "return=representation"
            document = {"@odata.context": f"{base}$metadata#{table.entity_set}/$entity"} | self.present(table, row)
            return Reply(201 if created else 200, document, headers)
        return Reply(204, None, headers)

    def patch(self, table: Table, key: dict[str, Any] | str, request: Request, changes: list[Change]) -> Reply:
        key = self.key_columns(table, key)
        if_match = request.headers.get("if-match")
        create_only = request.headers.get("if-none-match") == "*"
        if create_only and not if_match and isinstance(key, str):
            return self._create_by_id(table, key, request, changes)
        existing = self.locate(table, key, request) if isinstance(key, str) else None
        if isinstance(key, dict):
            existing = self.store.find(table.entity_set, key_text(key, table.key))
        if create_only and existing is not None:
            raise _exists()
        if if_match and existing is None:
            raise SimError(404, f"{table.name} With Id = {key} Does Not Exist", "0x80040217")
        body = body_of(request)
        data, submitted = self._accept(table, body)
        if isinstance(key, dict):
            for name, value in key.items():
                if name in data and str(data[name]).lower() != str(value).lower():
                    raise SimError(400, f"The key attribute '{name}' cannot be changed in the body.", "0x80060888")
        if existing is None:
            row_id = key if isinstance(key, str) else str(uuid.uuid4())
            full = (dict(key) if isinstance(key, dict) else {}) | data
            return self._insert(table, row_id, full, submitted, request, changes, _exists)
        check_if_match(self, existing, request)
        row = self.store.update(existing, existing.data | data)
        changes.append(
            Change(table, "update", existing, row, submitted, request.query.get("tag"), request.user, bypassed(request))
        )
        return self._written(table, row, request, created=False)

    def _create_by_id(self, table: Table, row_id: str, request: Request, changes: list[Change]) -> Reply:
        """`PATCH <set>(<id>)` with `If-None-Match: *`: create only (what a sync run sends). A taken id is refused
        before the body is read (412), as `patch` does; the id is looked up only when the body or the insert is
        refused, so that an untaken id (every row of a bulk create) costs no read."""
        try:
            data, submitted = self._accept(table, body_of(request))
        except SimError:
            if self.store.get(table.entity_set, row_id) is not None:
                raise _exists() from None
            raise
        return self._insert(table, row_id, data, submitted, request, changes, _exists)


def _exists() -> SimError:
    """Microsoft Learn, "Perform conditional operations using the Web API": `If-None-Match: *` on an existing row."""
    return SimError(412, "A record with matching key values already exists.", "0x80040237")


def _duplicate() -> SimError:
    return SimError(412, "Cannot insert duplicate key.", "0x80040237")


def registration_seed(store: Store, tables: list[Table]) -> None:
    """The SDK messages and message filters real Dataverse has, so registration looks them up the real way."""
    with store.transaction():
        for message in MESSAGES.values():
            message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sdkmessage:{message}"))
            if store.get("sdkmessages", message_id) is None:
                store.insert("sdkmessages", message_id, key_text({"name": message}, ["name"]), {"name": message})
            for table in tables:
                if table.system:
                    continue
                filter_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"filter:{message}:{table.name}"))
                data = {"primaryobjecttypecode": table.name, "sdkmessageid": message_id}
                if store.get("sdkmessagefilters", filter_id) is None:
                    store.insert(
                        "sdkmessagefilters", filter_id, key_text(data, ["primaryobjecttypecode", "sdkmessageid"]), data
                    )


if __name__ == "__main__":
    from local.sims.server import main

    main("dataverse", 7301)
