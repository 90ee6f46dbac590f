"""Loads the business event bindings (`maps/business-events.yaml`), checked before they are used."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.events.fno import BusinessEventBinding

DEFAULT_BINDINGS = Path(__file__).resolve().parents[2] / "maps" / "business-events.yaml"


class BindingsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bindings: list[BusinessEventBinding] = []


class BindingsError(ValueError):
    pass


def load_bindings(path: Path = DEFAULT_BINDINGS) -> dict[str, BusinessEventBinding]:
    if not path.exists():
        return {}
    try:
        document = BindingsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise BindingsError(f"{path.name}: {exc}") from None
    by_id: dict[str, BusinessEventBinding] = {}
    for binding in document.bindings:
        if binding.business_event_id in by_id:
            raise BindingsError(f"{path.name}: {binding.business_event_id} is bound twice")
        by_id[binding.business_event_id] = binding
    return by_id
