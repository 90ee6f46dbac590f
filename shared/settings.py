"""Every app setting the bridge reads, in one pydantic-settings model.

Names follow the Azure Functions convention: app settings arrive as environment variables, and identity-based
connections use the `<Connection>__<property>` form (`AzureWebJobsStorage__accountName`). Secrets are `SecretStr`
so they never appear in a repr or a log line.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(ValueError):
    """An app setting is missing or malformed; the message names the setting, never its secret value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
    )

    # --- Table Storage (our ledger) -------------------------------------------------------------------------------
    storage_connection_string: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage", "storage_connection_string")
    )
    storage_account_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__accountName", "storage_account_name"),
    )
    storage_table_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__tableServiceUri", "storage_table_endpoint"),
    )

    # --- Service Bus ----------------------------------------------------------------------------------------------
    servicebus_connection_string: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ServiceBusConnection", "servicebus_connection_string")
    )
    servicebus_namespace: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ServiceBusConnection__fullyQualifiedNamespace", "servicebus_namespace"),
    )
    changes_queue: str = Field(default="changes", validation_alias=AliasChoices("CHANGES_QUEUE", "changes_queue"))
    session_lanes: int = Field(
        default=8,  # = host.json maxConcurrentSessions: every lane has a receiver
        ge=0,
        le=1000,
        validation_alias=AliasChoices("SESSION_LANES", "session_lanes"),
        description="Sessions the changes are spread over (a row keeps its lane); 0: one session per row",
    )

    # --- Ingest ---------------------------------------------------------------------------------------------------
    webhook_max_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, validation_alias=AliasChoices("WEBHOOK_MAX_BYTES", "webhook_max_bytes")
    )
    enqueue_timeout_seconds: float = Field(
        default=8.0,  # F&O gives up on an HTTPS endpoint after 10 s
        gt=0,
        validation_alias=AliasChoices("ENQUEUE_TIMEOUT_SECONDS", "enqueue_timeout_seconds"),
    )
    maps_dir: str | None = Field(default=None, validation_alias=AliasChoices("MAPS_DIR", "maps_dir"))
    business_events_file: str | None = Field(
        default=None, validation_alias=AliasChoices("BUSINESS_EVENTS_FILE", "business_events_file")
    )

    # --- The two apps -------------------------------------------------------------------------------------------
    dataverse_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATAVERSE_URL", "dataverse_url"),
        description="https://<org>.crm.dynamics.com (locally http://127.0.0.1:7301)",
    )
    fno_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FNO_URL", "fno_url"),
        description="https://<env>.operations.dynamics.com (locally http://127.0.0.1:7302)",
    )
    azure_tenant_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AZURE_TENANT_ID", "azure_tenant_id")
    )
    dataverse_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("DATAVERSE_CLIENT_ID", "dataverse_client_id")
    )
    dataverse_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATAVERSE_CLIENT_SECRET", "dataverse_client_secret")
    )
    fno_client_id: str | None = Field(default=None, validation_alias=AliasChoices("FNO_CLIENT_ID", "fno_client_id"))
    fno_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FNO_CLIENT_SECRET", "fno_client_secret")
    )
    local_bearer_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LOCAL_BEARER_TOKEN", "local_bearer_token"),
        description="Only for the local simulators: a static token instead of azure-identity",
    )
    connector_max_in_flight: int = Field(
        default=52, gt=0, validation_alias=AliasChoices("CONNECTOR_MAX_IN_FLIGHT", "connector_max_in_flight")
    )
    connector_retry_attempts: int = Field(
        default=3, ge=1, validation_alias=AliasChoices("CONNECTOR_RETRY_ATTEMPTS", "connector_retry_attempts")
    )
    connector_retry_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("CONNECTOR_RETRY_SECONDS", "connector_retry_seconds"),
        description="Retry budget inside one apply; beyond it apply re-schedules the change",
    )

    # --- Health ---------------------------------------------------------------------------------------------------
    health_timeout_seconds: float = Field(
        default=3.0, gt=0, validation_alias=AliasChoices("HEALTH_TIMEOUT_SECONDS", "health_timeout_seconds")
    )

    @model_validator(mode="after")
    def _one_way_to_each_service(self) -> Settings:
        if self.storage_connection_string and (self.storage_account_name or self.storage_table_endpoint):
            raise ValueError(
                "set either AzureWebJobsStorage (a connection string) or AzureWebJobsStorage__accountName / "
                "__tableServiceUri (managed identity), not both"
            )
        if self.servicebus_connection_string and self.servicebus_namespace:
            raise ValueError(
                "set either ServiceBusConnection (a connection string) or "
                "ServiceBusConnection__fullyQualifiedNamespace (managed identity), not both"
            )
        return self

    @property
    def table_endpoint(self) -> str | None:
        """The Table service URL for identity-based connections."""
        if self.storage_table_endpoint:
            return self.storage_table_endpoint
        if self.storage_account_name:
            return f"https://{self.storage_account_name}.table.core.windows.net"
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigurationError(f"invalid app settings: {exc}") from None
