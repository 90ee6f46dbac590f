"""The F&O simulator: OData at `/data/` with F&O's semantics (full keys, `cross-company`, no upsert, Infolog error
bodies, `$batch` failures under an outer 200) and data events (`OnExternalCreated/Updated/Deleted` on the
entities' `mserp_*` virtual tables) posted to the endpoint an admin call sets.

`python -m local.sims.fno [--port 7302] [--db FILE] [--seed]`
"""

from __future__ import annotations

import base64
import time
import uuid
import zlib
from typing import Any

from local.sims.delivery import Deliverer, Notification
from local.sims.engine import Change, Reply, Request, SimError, body_of, check_if_match
from local.sims.fno_schema import csdl, option_set_value, undefined_symbol, wrong_type
from local.sims.schema import Table
from local.sims.store import Store, StoredRow, key_text
from shared.connectors.wire import dumps

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
OPERATIONS = {"create": "OnExternalCreated", "update": "OnExternalUpdated", "delete": "OnExternalDeleted"}
WRITE_FAILED = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"


class FnoDialect:
    name = "fno"
    root = "/data/"

    def __init__(self, store: Store, default_company: str = "usmf") -> None:
        self.store = store
        self.default_company = default_company
        self.deliverer = Deliverer()
        self.endpoint: dict[str, Any] | None = None  # {"url": …, "headers": {…}}
        self.tables: list[Table] = []

    def etag(self, row: StoredRow) -> str:
        """F&O's ETag: base64 of `'<RecVersion>,<RecId>'` per table of the entity (`;` between tables), as real
        environments answer (`'1,68719482833'`; a four-table entity: `'0,22565421676;0,22565421426;0,0;0,…'`). The RecId
        never changes; RecVersion is 1 when the row is inserted and a random number after each update ("Optimistic
        Concurrency Control", Dynamics AX docs: "The default value of recVersion is 1. This is changed to a random
        value when a record is updated."). So an ETag tells that a row changed, never which state is newer."""
        rec_id = 5637144576 + zlib.crc32(f"{row.entity_set}|{row.id}".encode())
        rec_version = 1 if row.modified == row.created else (zlib.crc32(f"{row.id}|{row.version}".encode()) >> 1) or 2
        return 'W/"' + base64.b64encode(f"'{rec_version},{rec_id}'".encode()).decode() + '"'

    def error_body(self, error: SimError) -> Any:
        if error.status == 401:
            return {"error": {"code": "", "message": error.message}}
        return {
            "error": {
                "code": "",
                "message": "An error has occurred.",
                "innererror": {"message": error.message, "type": WRITE_FAILED, "stacktrace": ""},
            }
        }

    def length_error(self, table: Table, column: str, max_length: int) -> SimError:
        return SimError(
            400,
            f"Write failed for table row of type '{table.name}'. Infolog: Error: The value in field {column} is "
            f"longer than its {max_length} characters.",
        )

    def locate(self, table: Table, key: dict[str, Any] | str, request: Request) -> StoredRow | None:
        if isinstance(key, str):
            raise SimError(400, f"{table.name} is addressed by its key fields ({', '.join(table.key)}), not an id.")
        missing = [k for k in table.key if k not in key]
        if missing or len(key) != len(table.key):
            raise SimError(400, f"The key of {table.name} is {', '.join(table.key)}; every key field is required.")
        return self.store.find(table.entity_set, key_text(key, table.key))

    def visible(self, table: Table, row: StoredRow, request: Request) -> bool:
        if "dataAreaId" not in table.key or request.query.get("cross-company", "").lower() == "true":
            return True
        return str(row.data.get("dataAreaId", "")).lower() == self.default_company

    def present(self, table: Table, row: StoredRow) -> dict[str, Any]:
        return {"@odata.etag": self.etag(row)} | row.data

    def _accept(self, table: Table, body: dict[str, Any]) -> dict[str, Any]:
        data = {}
        for name, value in body.items():
            if name.startswith("@"):
                continue
            if table.column(name) is None:
                raise SimError(
                    400,
                    f"Error processing the request: the property '{name}' does not exist on type "
                    f"'Microsoft.Dynamics.DataEntities.{table.name}'.",
                )
            refused = undefined_symbol(table, name, value) or wrong_type(table, name, value)
            if refused:
                raise SimError(400, refused)
            data[name] = value.lower() if name == "dataAreaId" and isinstance(value, str) else value
        return data

    def bind(self, tables: list[Table]) -> list[Table]:
        """The served tables (customizations change them in place), for what F&O publishes about them."""
        self.tables = tables
        return tables

    def service(self, request: Request) -> Reply | None:
        """`GET /data/$metadata`: the CSDL of every served entity (types, lengths, keys, enums); None: not it."""
        if request.path == "$metadata" and request.method == "GET":
            return Reply(200, csdl(self.tables), {"Content-Type": "application/xml"})
        return None

    def create(self, table: Table, request: Request, changes: list[Change]) -> Reply:
        data = self._accept(table, body_of(request))
        if "dataAreaId" in table.key and not data.get("dataAreaId"):
            data["dataAreaId"] = self.default_company
        missing = [k for k in table.key if data.get(k) in (None, "")]
        if missing:
            raise SimError(
                400,
                f"Write failed for table row of type '{table.name}'. Infolog: Error: Field "
                f"'{missing[0]}' must be filled in.",
            )
        key = key_text(data, table.key)
        if self.store.find(table.entity_set, key) is not None:
            shown = ", ".join(f"{k}: {data[k]}" for k in table.key)
            raise SimError(
                400,
                f"Write failed for table row of type '{table.name}'. Infolog: Error: Cannot create a "
                f"record in {table.name}. {shown}. The record already exists.",
            )
        row = self.store.insert(table.entity_set, str(uuid.uuid4()), key, data)
        changes.append(Change(table, "create", None, row, list(data), None, request.user))
        return Reply(201, self.present(table, row), {"ETag": self.etag(row), "Location": f"{table.entity_set}"})

    def patch(self, table: Table, key: dict[str, Any] | str, request: Request, changes: list[Change]) -> Reply:
        existing = self.locate(table, key, request)
        if existing is None or not self.visible(table, existing, request):
            raise SimError(404, f"Resource not found for the segment '{table.entity_set}'.")
        check_if_match(self, existing, request)
        data = self._accept(table, body_of(request))
        assert isinstance(key, dict)
        for name in table.key:
            if name in data and str(data[name]).lower() != str(key[name]).lower():
                raise SimError(
                    400,
                    f"Write failed for table row of type '{table.name}'. Infolog: Error: The key "
                    f"field {name} cannot be changed.",
                )
        row = self.store.update(existing, existing.data | data)
        changes.append(Change(table, "update", existing, row, list(data), None, request.user))
        return Reply(204, None, {"ETag": self.etag(row)})

    # --- data events ----------------------------------------------------------------------------------------------

    def notify(self, changes: list[Change]) -> None:
        if not self.endpoint:
            return
        for change in changes:
            table = change.table
            if not table.virtual_table:
                continue
            row = change.after or change.before
            assert row is not None
            body = self.context(change, row)
            url = str(self.endpoint["url"])
            headers = {"Content-Type": "application/json"} | dict(self.endpoint.get("headers") or {})
            self.deliverer.submit(Notification(f"{table.name}:{row.id}", url, headers, dumps(body).encode("utf-8")))

    def context(self, change: Change, row: StoredRow) -> dict[str, Any]:
        table = change.table
        virtual = str(table.virtual_table)
        if change.operation == "delete":
            names: list[str] = []
        elif change.operation == "create":
            names = list(row.data)
        else:  # updates carry the changed fields (and, here, the key so the row can be named)
            names = list(dict.fromkeys([*table.key, *change.submitted]))
        # Enums travel as the virtual table's option-set values (200000000 + the symbol's index), not as symbols:
        # a receiver learns the symbol only by reading the entity through OData (../shared/reference/fno.md).
        attributes = [
            {"key": f"mserp_{n.lower()}", "value": option_set_value(table.column(n), row.data.get(n))}
            for n in names
            if n in row.data
        ]
        attributes = [a for a in attributes if a["value"] is not None]  # null fields are dropped, as F&O does
        attributes.append({"key": f"{virtual}id", "value": row.id})
        target = {
            "__type": f"Entity:{CONTRACTS}",
            "Attributes": attributes,
            "EntityState": None,
            "FormattedValues": [],
            "Id": row.id,
            "KeyAttributes": [],
            "LogicalName": virtual,
            "RelatedEntities": [],
            "RowVersion": str(row.version),
        }
        return {
            "BusinessUnitId": "00000000-0000-0000-0000-000000000000",
            "CorrelationId": str(uuid.uuid4()),
            "Depth": 1,
            "InitiatingUserId": change.user,
            "InputParameters": [{"key": "Target", "value": target}],
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": OPERATIONS[change.operation],
            "Mode": 1,
            "OperationCreatedOn": f"/Date({int(time.time() * 1000)})/",
            "OperationId": str(uuid.uuid4()),
            "OrganizationId": "00000000-0000-0000-0000-000000000000",
            "OrganizationName": "fno-sim",
            "OutputParameters": [],
            "PostEntityImages": [],
            "PreEntityImages": [],
            "PrimaryEntityId": "00000000-0000-0000-0000-000000000000",
            "PrimaryEntityName": virtual,
            "RequestId": str(uuid.uuid4()),
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": 40,
            "UserId": change.user,
        }


if __name__ == "__main__":
    from local.sims.server import main

    main("fno", 7302)
