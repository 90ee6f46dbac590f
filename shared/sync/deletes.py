"""A delete in one app, carried to the other as its map says (`delete`, `deactivate` or `ignore`)."""

from __future__ import annotations

from shared.connectors.errors import NotFound
from shared.events.model import ChangeEvent
from shared.maps.model import Side, TableMap
from shared.sync.outcome import Outcome, invalid
from shared.sync.plan import TAG_PREFIX, integration_key
from shared.sync.ports import LedgerPort, RowsPort


async def apply_delete(ledger: LedgerPort, dataverse: RowsPort, fno: RowsPort, m: TableMap, side: Side,
                       event: ChangeEvent) -> Outcome:  # fmt: skip
    key = await ledger.key_for(m.name, side, event.row_id) or integration_key(m, event.fields | event.keys)
    entry = await ledger.get(m.name, key) if key else None
    if entry is None or key is None:
        return Outcome(m.name, "skipped", "a row the bridge never synced")
    if entry.deleted:
        return Outcome(m.name, "skipped-echo", "already deleted")
    into = side.other
    writes = 0
    if m.delete == "ignore":
        return Outcome(m.name, "skipped", "the map ignores deletes")
    tag = f"{TAG_PREFIX}{event.event_id}"
    if into is Side.FNO:
        if m.delete == "delete":  # F&O has no deactivation: `deactivate` leaves the row
            try:
                await fno.delete(m, key, tag)
                writes = 1
            except NotFound:
                pass
    else:
        row_id = entry.dataverse.row_id
        if not row_id:
            raise invalid(m, "the Dataverse row id is unknown")
        try:
            if m.delete == "delete":
                await dataverse.delete(m, row_id, tag)
            else:
                await dataverse.deactivate(m, row_id, tag)
            writes = 1
        except NotFound:
            pass
    entry.deleted = True
    entry.side(into).etag = None
    entry.side(side).last_event = event.event_id
    await ledger.save(entry)
    return Outcome(m.name, "applied", f"{m.delete} on {into}", writes)
