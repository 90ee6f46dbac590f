"""Both sides' changes to one synced row share an ordering key, hence a session: they are applied one at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.bus.lanes import session_for
from shared.events.model import ChangeEvent
from shared.ingest.ordering import ordering_key
from shared.maps.loader import load_maps

MAPS = load_maps()


def _event(source: str, entity: str, row_id: str, **values: Any) -> ChangeEvent:
    return ChangeEvent.model_validate(
        {"event_id": f"e-{source}-{row_id}", "source": source, "entity": entity, "operation": "update",
         "row_id": row_id, "occurred_at": datetime(2026, 11, 22, tzinfo=UTC)} | values
    )  # fmt: skip


def test_a_dataverse_and_an_fno_change_to_one_customer_share_a_key_and_a_lane() -> None:
    dataverse = _event(
        "dataverse", "account", "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        fields={"accountnumber": "C-1001 ", "msdyn_company": {"id": "1f6e0a4e-0000-0000-0000-000000000001"}},
    )  # fmt: skip
    fno = _event("fno", "CustomersV3", "{7}", keys={"dataAreaId": "usmf", "CustomerAccount": "c-1001"})
    assert ordering_key(dataverse, MAPS) == ordering_key(fno, MAPS) == "customers:c-1001"
    with_keys = [e.model_copy(update={"ordering_key": ordering_key(e, MAPS)}) for e in (dataverse, fno)]
    assert session_for(with_keys[0], 16) == session_for(with_keys[1], 16)


def test_a_change_without_its_row_key_has_none_and_keeps_its_own_row_lane() -> None:
    event = _event("dataverse", "account", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", fields={"name": "x"})
    assert ordering_key(event, MAPS) is None
    assert session_for(event, 16) == session_for(event.model_copy(update={"entity": "account"}), 16)


def test_an_unmapped_entity_has_none() -> None:
    assert ordering_key(_event("fno", "NotMapped", "1", keys={"X": "1"}), MAPS) is None
