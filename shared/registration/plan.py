"""What to register, worked out from the maps: pure, so `--dry-run` prints exactly what a real run would write.

Dataverse: one webhook service endpoint; per mapped table and message (Create, Update, Delete) one asynchronous
post-operation step, Update filtered to the columns the maps read, with a post-image (Create, Update) and a
pre-image (Update, Delete) so apply has whole rows. F&O: the data events (virtual tables) and business events to
activate, and the endpoint to point them at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.events.bindings import load_bindings
from shared.maps.loader import MapSet
from shared.maps.model import Side

ENDPOINT_NAME = "dual-sync-bridge"
MESSAGES = ("Create", "Update", "Delete")
WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY = 4
MESSAGE_FORMAT_JSON = 2
STAGE_POST_OPERATION = 40
MODE_ASYNC = 1
IMAGE_PRE, IMAGE_POST = 0, 1


@dataclass(frozen=True)
class ImagePlan:
    name: str
    alias: str
    image_type: int
    property_name: str  # "Target" (Create/Update) or "Target" for Delete too: the entity reference
    attributes: str


@dataclass(frozen=True)
class StepPlan:
    name: str
    table: str
    message: str
    filtering_attributes: str
    images: tuple[ImagePlan, ...] = ()


@dataclass
class DataversePlan:
    endpoint_name: str
    url: str
    steps: list[StepPlan] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"service endpoint {self.endpoint_name!r}: webhook → {self.url} (WebhookKey)"]
        for s in self.steps:
            images = ", ".join(f"{i.alias} ({'pre' if i.image_type == IMAGE_PRE else 'post'})" for i in s.images)
            filtering = f" filtering {s.filtering_attributes}" if s.filtering_attributes else ""
            lines.append(f"  step {s.name!r}: {s.message} of {s.table}, async post-operation{filtering}; {images}")
        return "\n".join(lines)


def dataverse_plan(maps: MapSet, webhook_url: str, endpoint_name: str = ENDPOINT_NAME) -> DataversePlan:
    columns: dict[str, set[str]] = {}
    for compiled in maps.enabled():
        m = compiled.map
        if not any(m.flows(f, Side.FNO) for f in m.fields):
            continue  # nothing flows from Dataverse: no step needed
        columns.setdefault(m.dataverse.table, set()).update(m.readable(Side.DATAVERSE))
    plan = DataversePlan(endpoint_name, webhook_url)
    for table in sorted(columns):
        # The images also hold `versionnumber`: a webhook's Target and images carry `RowVersion: null` (Microsoft's
        # sample body), so the row's version — what orders its changes — reaches the bridge only as that column.
        attributes = ",".join(sorted(columns[table] | {"versionnumber"}))
        filtering = ",".join(sorted(columns[table]))
        for message in MESSAGES:
            name = f"{endpoint_name}: {message} of {table}"
            images: list[ImagePlan] = []
            if message in ("Update", "Delete"):
                images.append(ImagePlan(f"{name} PreImage", "PreImage", IMAGE_PRE, "Target", attributes))
            if message in ("Create", "Update"):
                images.append(ImagePlan(f"{name} PostImage", "PostImage", IMAGE_POST, "Target", attributes))
            plan.steps.append(StepPlan(name, table, message, filtering if message == "Update" else "", tuple(images)))
    return plan


def fno_plan(maps: MapSet, webhook_url: str) -> str:
    """What to activate in F&O (System administration > Business events / Data events), as text."""
    lines = [f"Endpoint (HTTPS, or a Dataverse webhook when Power Platform integration proxies events): {webhook_url}"]
    lines.append("Data events to activate (Created, Updated, Deleted) on these virtual tables:")
    for compiled in maps.enabled():
        m = compiled.map
        if m.fno.virtual_table and any(m.flows(f, Side.DATAVERSE) for f in m.fields):
            lines.append(f"  {m.fno.virtual_table}  ({m.fno.entity}, map {m.name})")
    bindings = load_bindings()
    if bindings:
        lines.append("Business events to activate:")
        for binding in bindings.values():
            lines.append(f"  {binding.business_event_id}  → {binding.operation} of {binding.entity}")
    return "\n".join(lines)
