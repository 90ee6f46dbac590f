"""Offline checks of the Azure infrastructure: every Bicep file parses, checkov finds nothing (skips only inline,
each with its reason), and the Service Bus queues are generated from the file the local broker reads."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from local.servicebus.config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
INFRA_PYTHON = ROOT / ".venv-infra" / "bin" / "python"

# ARM queue property → its key in the emulator Config.json `Properties` the local broker reads.
QUEUE_PROPERTIES = {
    "requiresSession": "RequiresSession",
    "requiresDuplicateDetection": "RequiresDuplicateDetection",
    "duplicateDetectionHistoryTimeWindow": "DuplicateDetectionHistoryTimeWindow",
    "maxDeliveryCount": "MaxDeliveryCount",
    "lockDuration": "LockDuration",
    "defaultMessageTimeToLive": "DefaultMessageTimeToLive",
    "deadLetteringOnMessageExpiration": "DeadLetteringOnMessageExpiration",
}


def _infra_tools() -> Path:
    if not INFRA_PYTHON.exists():
        pytest.fail("the infra tools are missing: `make test` installs them into .venv-infra")
    return INFRA_PYTHON


@cache
def parsed() -> dict[str, Any]:
    out = subprocess.run(
        [str(_infra_tools()), str(Path(__file__).with_name("bicep_to_json.py")), "infra"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _path(expression: Any) -> list[str]:
    """`q.Properties.LockDuration` as pycep-parser gives it → ["q", "Properties", "LockDuration"]."""
    if isinstance(expression, str):
        return [expression]
    operator = expression["operator"]
    first, second = operator["operands"]["operand_1"], operator["operands"]["operand_2"]
    if operator["type"] == "index_accessor":
        return [*_path(first), f"[{second}]"]
    assert operator["type"] == "property_accessor", operator
    return [*_path(first), *_path(second)]


def test_every_bicep_file_parses() -> None:
    files = parsed()
    assert {"infra/main.bicep", "infra/modules/servicebus.bicep", "infra/modules/functionapp.bicep",
            "infra/modules/operator-app.bicep"} <= set(files)  # fmt: skip
    failures = {path: doc["error"] for path, doc in files.items() if "error" in doc}
    assert not failures, failures


def test_checkov_finds_no_failed_check_and_every_skip_says_why() -> None:
    # The console's app registration (Microsoft Graph resources, no Azure resource checkov has a check for) is left
    # to `test_console_infra.py`: checkov's Bicep parser predates the `extension` statement it needs.
    out = subprocess.run(
        [str(_infra_tools()), "-m", "checkov.main", "-d", "infra", "--framework", "bicep", "--skip-download",
         "--skip-path", "operator-app.bicep", "-o", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )  # fmt: skip
    report = json.loads(out.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0]["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert summary["parsing_errors"] == 0 and not failed, failed
    assert summary["passed"] > 20  # it really looked at the resources
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    reasonless = [c["check_id"] for c in skipped if len(c["check_result"].get("suppress_comment", "").strip()) < 20]
    assert not reasonless, f"inline skips need a reason: {reasonless}"


def test_queues_come_from_the_config_the_local_broker_reads() -> None:
    text = (INFRA / "modules" / "servicebus.bicep").read_text()
    (source,) = re.findall(r"loadJsonContent\('([^']+)'\)", text)
    assert (INFRA / "modules" / source).resolve() == DEFAULT_CONFIG.resolve()

    doc = parsed()["infra/modules/servicebus.bicep"]
    variables = doc["variables"]
    loaded = variables["entities"]["value"]["function"]
    assert loaded["type"] == "load_json_content" and loaded["parameters"]["file_path"] == source
    assert _path(variables["queues"]["value"]) == ["entities", "UserConfig", "Namespaces", "[0]", "Queues"]
    queue = doc["resources"]["queue"]
    assert queue["type"] == "Microsoft.ServiceBus/namespaces/queues"
    assert queue["config"]["loop_type"]["detail"] == {"item_name": "q", "array_name": "queues"}
    body = queue["config"]["config"]
    assert _path(body["name"]) == ["q", "Name"]
    # Each ARM property is the same key of the entity config; none is left out or hard-coded.
    properties = body["properties"]
    assert set(properties) == set(QUEUE_PROPERTIES)
    for arm, key in QUEUE_PROPERTIES.items():
        assert _path(properties[arm]) == ["q", "Properties", key], arm
    config = json.loads(DEFAULT_CONFIG.read_text())
    for q in config["UserConfig"]["Namespaces"][0]["Queues"]:
        assert set(QUEUE_PROPERTIES.values()) <= set(q["Properties"]), q["Name"]


def test_azd_parameters_name_only_parameters_main_bicep_declares() -> None:
    main = parsed()["infra/main.bicep"]
    declared = set(main["parameters"])
    given = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    assert given <= declared, given - declared
    required = {name for name, p in main["parameters"].items() if "default" not in json.dumps(p)}
    assert required <= given, required - given


def test_no_app_setting_carries_a_key_or_connection_string() -> None:
    text = (INFRA / "modules" / "functionapp.bicep").read_text()
    settings = set(re.findall(r"name: '([A-Za-z_]+)'", text))
    assert {"AzureWebJobsStorage__accountName", "ServiceBusConnection__fullyQualifiedNamespace"} <= settings
    assert "AzureWebJobsStorage" not in settings and "ServiceBusConnection" not in settings
    assert "AccountKey" not in text and "SharedAccessKey" not in text
    secrets = re.findall(r"name: '([A-Z_]+_SECRET)'\s+value: '([^']+)'", text)
    assert secrets and all(v.startswith("@Microsoft.KeyVault(") for _, v in secrets)


def test_storage_takes_no_shared_key_and_serves_no_public_blob() -> None:
    storage = parsed()["infra/modules/storage.bicep"]["resources"]["storage"]["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False and storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2" and storage["supportsHttpsTrafficOnly"] is True
    namespace = parsed()["infra/modules/servicebus.bicep"]["resources"]["namespace"]["config"]["properties"]
    assert namespace["disableLocalAuth"] is True
