"""The ingest service: parse a notification, keep what the maps read, queue it all-or-nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.bus.publisher import ChangePublisher
from shared.events.dataverse import parse_dataverse
from shared.events.errors import ChangeTooLarge
from shared.events.fno import BusinessEventBinding, FnoCatalog, parse_fno
from shared.events.model import ChangeEvent, Ignored, Side
from shared.ingest.enums import VirtualTableEnums
from shared.ops.telemetry import ingest_span

# A Service Bus Standard message holds 256 KB, headers and properties included (Premium: 1 MB by default).
# "Service Bus quotas", https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas
MAX_CHANGE_BYTES = 192 * 1024
EntityFilter = Callable[[ChangeEvent], str | None]  # None: keep; else why the change is ignored
RowOrdering = Callable[[ChangeEvent], str | None]  # the synced row, named alike from both sides


def no_ordering(event: ChangeEvent) -> str | None:
    return None


def keep_everything(event: ChangeEvent) -> str | None:
    return None


@dataclass
class IngestResult:
    accepted: list[ChangeEvent] = field(default_factory=list)
    ignored: list[ChangeEvent | Ignored] = field(default_factory=list)

    @property
    def only_test_messages(self) -> bool:
        return not self.accepted and bool(self.ignored) and all(isinstance(i, Ignored) and i.test for i in self.ignored)


class IngestService:
    def __init__(
        self,
        publisher: ChangePublisher,
        bindings: Mapping[str, BusinessEventBinding],
        catalog: FnoCatalog | None = None,
        entity_filter: EntityFilter = keep_everything,
        ordering: RowOrdering = no_ordering,
        enums: VirtualTableEnums | None = None,
    ) -> None:
        self._publisher = publisher
        self._enums = enums
        self._bindings = bindings
        self._catalog = catalog
        self._filter = entity_filter
        self._ordering = ordering

    async def receive(self, source: Side, body: bytes, headers: Mapping[str, str]) -> IngestResult:
        """Raises InvalidNotification (nothing queued) or BusUnavailable (nothing acknowledged)."""
        if source == Side.DATAVERSE:
            parsed = parse_dataverse(body, headers)
        else:
            parsed = await self._parse_fno(body, headers)
        result = IngestResult()
        refused: list[tuple[str, ChangeTooLarge]] = []
        with ingest_span(headers) as trace:  # one operation id from here to the target write
            for index, item in enumerate(parsed):
                if isinstance(item, Ignored) or self._filter(item) is not None:
                    result.ignored.append(item)
                    continue
                update = {"ordering_key": self._ordering(item), "traceparent": item.traceparent or trace}
                try:
                    result.accepted.append(fitting(item.model_copy(update=update)))
                except ChangeTooLarge as exc:
                    refused.append((f"body[{index}]" if len(parsed) > 1 else "body", exc))
            await self._publisher.publish(result.accepted)
        if refused:
            raise _refusal(refused, result.accepted)
        return result

    async def _parse_fno(self, body: bytes, headers: Mapping[str, str]) -> list[ChangeEvent | Ignored]:
        """Parsed with the enum options known; parsed once more when one was missing and could be read now."""
        if self._enums is None:
            return parse_fno(body, headers, self._bindings, self._catalog)
        symbols = self._enums.snapshot()
        parsed = parse_fno(body, headers, self._bindings, self._catalog, symbols)
        if symbols.missed and await self._enums.refresh(symbols.missed, symbols.generation):
            parsed = parse_fno(body, headers, self._bindings, self._catalog, self._enums.snapshot())
        return parsed


def _refusal(refused: list[tuple[str, ChangeTooLarge]], queued: list[ChangeEvent]) -> ChangeTooLarge:
    """The changes that cannot be queued, named, once the others are. The answer stays an error (413): F&O then
    retries the whole POST — the others again, with the same event ids, dropped by the queue's duplicate detection
    and by apply's — and finally records the refused change as failed, where a person sees it, instead of it being
    acknowledged and lost."""
    where = [w for w, _ in refused]
    detail = "; ".join(f"{w}: {e}" if w != "body" else str(e) for w, e in refused)
    if queued:
        detail += f" — the other {len(queued)} change(s) of the notification were queued"
    return ChangeTooLarge(detail, tuple(where), tuple(e.event_id for e in queued))


def fitting(event: ChangeEvent, limit: int = MAX_CHANGE_BYTES) -> ChangeEvent:
    """The change as it is if it fits one message; else without its values, marked for a re-read of the row —
    what Dataverse itself does with a payload over 256 KB (`x-ms-dynamics-msg-size-exceeded`)."""
    if len(event.model_dump_json().encode("utf-8")) <= limit:
        return event
    cut = event.model_copy(update={"fields": {}, "reread_required": True})
    size = len(cut.model_dump_json().encode("utf-8"))
    if size > limit:
        raise ChangeTooLarge(
            f"the change to {event.entity} {event.row_id[:80]} is {size} bytes even without its values;"
            f" a Service Bus message holds {limit}"
        )
    return cut
