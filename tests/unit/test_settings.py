import pytest

from shared.settings import ConfigurationError, Settings, get_settings


def test_reads_functions_style_names_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("ServiceBusConnection", "Endpoint=sb://127.0.0.1:5672;SharedAccessKey=x")
    monkeypatch.setenv("CHANGES_QUEUE", "changes-test")
    s = Settings()
    assert s.storage_connection_string is not None
    assert s.storage_connection_string.get_secret_value() == "UseDevelopmentStorage=true"
    assert s.servicebus_connection_string is not None
    assert s.changes_queue == "changes-test"


def test_identity_based_connections_use_the_double_underscore_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "syncbridgest")
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "sb-sync.servicebus.windows.net")
    s = Settings()
    assert s.table_endpoint == "https://syncbridgest.table.core.windows.net"
    assert s.servicebus_namespace == "sb-sync.servicebus.windows.net"


def test_secrets_never_appear_in_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "AccountKey=topsecret")
    s = Settings()
    assert "topsecret" not in repr(s)
    assert "topsecret" not in s.model_dump_json()


def test_both_forms_of_one_connection_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "AccountKey=x")
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "acct")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage") as info:
        get_settings()
    assert "AccountKey=x" not in str(info.value)
    get_settings.cache_clear()


def test_health_timeout_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTH_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValueError):
        Settings()
