"""Which synced row a change is about, in words both sides share, so that a Dataverse change and an F&O change to
one row take the same Service Bus session and are applied one after the other — never side by side."""

from __future__ import annotations

from shared.events.model import ChangeEvent
from shared.maps.loader import MapSet


def ordering_key(event: ChangeEvent, maps: MapSet) -> str | None:
    """`customers:c-1001`: the first map reading the change, and the row's own key values (the company left out: a
    Dataverse change names it by GUID, an F&O change by code). None when the change does not carry them."""
    side = event.source
    values = event.keys | event.fields
    for compiled in maps.reading(side, event.entity):
        m = compiled.map
        company = m.company_field(side)
        parts = []
        for name in m.key(side):
            if name == company:
                continue
            value = values.get(name)
            if value is None or isinstance(value, dict | list) or str(value).strip() == "":
                return None
            parts.append(str(value).strip().lower())
        return f"{m.name}:{'|'.join(parts)}" if parts else None
    return None
