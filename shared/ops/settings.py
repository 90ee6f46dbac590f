"""The console's and alerts' own app settings (apart from `shared.settings`, which the apply core owns)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.ops.alerts import AlertRule


class OpsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True)

    operator_auth: str = Field(
        default="key",
        pattern="^(key|entra)$",
        validation_alias=AliasChoices("OPERATOR_AUTH", "operator_auth"),
        description="key: the master key (locally); entra: App Service Authentication in front, an app role required",
    )
    operator_role: str = Field(
        default="Bridge.Operator", validation_alias=AliasChoices("OPERATOR_ROLE", "operator_role")
    )
    alert_webhook_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ALERT_WEBHOOK_URL", "alert_webhook_url")
    )
    console_url: str | None = Field(default=None, validation_alias=AliasChoices("CONSOLE_URL", "console_url"))
    notifications_queue: str = Field(
        default="notifications", validation_alias=AliasChoices("NOTIFICATIONS_QUEUE", "notifications_queue")
    )
    alert_rules: dict[str, list[AlertRule]] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("ALERT_RULES", "alert_rules"),
        description='{"<map>|*": [{"errors": 3, "minutes": 5, "actions": ["pause", "notify"]}, …]}',
    )

    @field_validator("alert_rules", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value.strip() else (value or {})

    def rules_for(self, map_name: str) -> list[AlertRule]:
        return [*self.alert_rules.get("*", []), *self.alert_rules.get(map_name, [])]


@lru_cache(maxsize=1)
def get_ops_settings() -> OpsSettings:
    return OpsSettings()
