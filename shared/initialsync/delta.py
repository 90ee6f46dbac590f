"""What a reconciliation after the first compares, pure: the Dataverse rows changed since its last check (change
tracking's delta), and the F&O rows that differ from what the ledger last synced, each with its counterpart.

Dataverse answers what changed since a delta link — Microsoft Learn, "Use change tracking to synchronize data with
external systems" — so its side is read as a delta. F&O offers no change tracking through OData for the entities
we map (and no modification time on them), so its side is read whole, but only the rows whose version or values
differ from the ledger's (or that the ledger does not know) are compared: a row equal to what was last synced on
both sides has nothing to repair. A change either side made since — its notification lost or not — is therefore
compared, and nothing else is; so is a linked row deleted since on either side (a Dataverse row in the delta's
`$deletedEntity`, an F&O row the ledger knows and the read no longer has): the plan carries the delete over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.initialsync.plan import Lookups, Snapshot, integration_key
from shared.ledger.model import LedgerEntry, key_text
from shared.maps.model import Side
from shared.maps.transform import CompiledMap, transform
from shared.sync.decide import normalize


def dataverse_key(
    compiled: CompiledMap,
    maps: Mapping[str, CompiledMap],
    row: Snapshot,
    ledger: Mapping[str, LedgerEntry],
    index: Mapping[tuple[Side, str], str],
    lookups: Lookups,
) -> str | None:
    """The integration key text of a Dataverse row: the ledger's, else its own values' (None when incomplete)."""
    known = index.get((Side.DATAVERSE, (row.row_id or "").lower()))
    if known is not None and known in ledger:
        return known
    m = compiled.map
    company = m.company_field(Side.FNO)
    key = transform(compiled, Side.DATAVERSE, row.record, maps, lookups).key
    if len(key) != len(m.fno.key) or any(v in (None, "") for v in key.values()):
        return None
    return key_text({k: (str(v).lower() if k == company else v) for k, v in key.items()})


def fno_changed(row: Snapshot, entry: LedgerEntry | None) -> bool:
    """Whether an F&O row may differ from what was last synced (the same version, or equal values: it does not)."""
    if entry is None:
        return True
    if row.version and entry.fno.version and row.version == entry.fno.version:
        return False
    return any(normalize(row.record.get(name)) != value for name, value in entry.fno.values.items())


@dataclass
class Narrowed:
    fno_rows: list[Snapshot] = field(default_factory=list)  # to compare
    dataverse_rows: list[Snapshot] = field(default_factory=list)  # changed in Dataverse (the delta)
    wanted: list[str] = field(default_factory=list)  # Dataverse ids to read: counterparts of changed F&O rows
    deleted: int = 0  # linked Dataverse rows deleted since: their F&O rows are compared (the delete carried over)


def narrow(
    compiled: CompiledMap,
    maps: Mapping[str, CompiledMap],
    fno_rows: Iterable[Snapshot],
    delta: Iterable[Snapshot],
    deleted_ids: Iterable[str],
    ledger: Mapping[str, LedgerEntry],
    index: Mapping[tuple[Side, str], str],
    lookups: Lookups,
) -> Narrowed:
    m = compiled.map
    gone = {index[(Side.DATAVERSE, i.lower())] for i in deleted_ids if (Side.DATAVERSE, i.lower()) in index}
    out = Narrowed(deleted=len(gone))
    changed_in_dataverse: set[str] = set()
    for row in delta:
        out.dataverse_rows.append(row)
        text = dataverse_key(compiled, maps, row, ledger, index, lookups)
        if text is not None:
            changed_in_dataverse.add(text)
    have = {r.row_id for r in out.dataverse_rows}
    seen: set[str] = set()  # every F&O key read (in the filters or not): a linked key not among them was deleted
    for row in fno_rows:
        key = integration_key(m, row.record)
        if key is None:
            out.fno_rows.append(row)  # reported as an error by the plan
            continue
        text = key_text(key)
        seen.add(text)
        entry = ledger.get(text)
        if text in gone:  # deleted in Dataverse, its notification perhaps lost: the plan carries the delete over
            out.fno_rows.append(row)
            continue
        if text not in changed_in_dataverse and not fno_changed(row, entry):
            continue
        out.fno_rows.append(row)
        row_id = entry.dataverse.row_id if entry is not None else None
        if row_id and row_id not in have:
            out.wanted.append(row_id)
    for text, entry in ledger.items():  # linked rows deleted in F&O: their Dataverse rows, to carry the delete over
        row_id = entry.dataverse.row_id
        if text not in seen and not entry.deleted and row_id and row_id not in have and text not in gone:
            out.wanted.append(row_id)
    return out
