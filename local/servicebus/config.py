"""Queue definitions in the official Service Bus emulator's Config.json format (one file, read by Bicep too)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 durations as Service Bus writes them (`PT1M`, `P14D`, `PT0.5S`)."""
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return timedelta(**parts)


class QueueProperties(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    requires_session: bool = Field(False, alias="RequiresSession")
    max_delivery_count: int = Field(10, alias="MaxDeliveryCount", ge=1)
    lock_duration: timedelta = Field(timedelta(minutes=1), alias="LockDuration")
    duplicate_detection_window: timedelta = Field(timedelta(minutes=10), alias="DuplicateDetectionHistoryTimeWindow")
    requires_duplicate_detection: bool = Field(False, alias="RequiresDuplicateDetection")
    default_message_ttl: timedelta = Field(timedelta(days=14), alias="DefaultMessageTimeToLive")
    dead_lettering_on_message_expiration: bool = Field(False, alias="DeadLetteringOnMessageExpiration")

    @field_validator("lock_duration", "duplicate_detection_window", "default_message_ttl", mode="before")
    @classmethod
    def _iso_duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value


class QueueConfig(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str = Field(alias="Name", min_length=1)
    properties: QueueProperties = Field(default_factory=QueueProperties, alias="Properties")  # type: ignore[arg-type]


class NamespaceConfig(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str = Field(alias="Name")
    queues: list[QueueConfig] = Field(default_factory=list, alias="Queues")
    topics: list[dict[str, Any]] = Field(default_factory=list, alias="Topics")


class UserConfig(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    namespaces: list[NamespaceConfig] = Field(alias="Namespaces", min_length=1)


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    user_config: UserConfig = Field(alias="UserConfig")

    def queues(self) -> list[QueueConfig]:
        return [q for ns in self.user_config.namespaces for q in ns.queues]


class TopicsNotSupported(ValueError):
    """The config defines topics, which the local broker does not implement: refused rather than ignored."""


def load_config(path: Path) -> EmulatorConfig:
    config = EmulatorConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    topics = [str(t.get("Name", "?")) for ns in config.user_config.namespaces for t in ns.topics]
    if topics:
        raise TopicsNotSupported(
            f"topics are not supported by the local broker (the config defines {', '.join(topics)}): "
            "remove them, or use the official emulator or a real namespace"
        )
    return config


DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "infra" / "servicebus-entities.json"
