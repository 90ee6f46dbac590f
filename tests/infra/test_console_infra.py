"""The console's Azure side, offline: App Service Authentication in front of the console and admin API only (the
webhooks and health keep their function keys), the app told to check the operator role, the app registration with
its `Bridge.Operator` role declared in Bicep (Microsoft Graph extension), and a workbook that reads the metrics the
bridge emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.ops.settings import OpsSettings
from shared.ops.telemetry import LATENCY_METRIC, OUTCOMES_METRIC
from tests.infra.test_bicep import parsed

INFRA = Path(__file__).parents[2] / "infra"


def test_app_service_authentication_guards_the_console_and_spares_the_webhooks() -> None:
    text = (INFRA / "modules" / "functionapp.bicep").read_text()
    assert "name: 'authsettingsV2'" in text and "requireAuthentication: true" in text
    assert "unauthenticatedClientAction: 'Return401'" in text
    excluded = re.search(r"excludedPaths: \[(.*?)\]", text, re.S)
    assert excluded is not None
    assert set(re.findall(r"'([^']+)'", excluded.group(1))) == {
        "/api/webhooks/dataverse", "/api/webhooks/fno", "/api/health"
    }  # fmt: skip
    # The functions trust the principal only when the platform put it there, and check the app role.
    assert "name: 'OPERATOR_AUTH'\n    value: 'entra'" in text and "name: 'OPERATOR_ROLE'" in text
    assert "@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${operatorSecretName})" in text


def test_the_operator_app_role_is_declared_in_bicep_and_signs_operators_in() -> None:
    """Microsoft Learn, "Microsoft Graph Bicep resource reference" (learn.microsoft.com/graph/templates/reference/
    overview): an application with its app roles, and its service principal, declared with `extension
    microsoftGraphV1` (the alias bicepconfig.json resolves to the registry's v1.0 types)."""
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    doc = parsed()["infra/modules/operator-app.bicep"]
    assert doc["extensions"] == ["microsoftGraphV1"]
    registration = doc["resources"]["registration"]
    assert (registration["type"], registration["api_version"]) == ("Microsoft.Graph/applications", "v1.0")
    (role,) = registration["config"]["appRoles"]
    assert role["value"] == "operatorRole" and role["isEnabled"] is True and role["allowedMemberTypes"] == ["User"]
    assert registration["config"]["web"]["redirectUris"] == ["${appUrl}/.auth/login/aad/callback"]
    assert registration["config"]["web"]["implicitGrantSettings"]["enableIdTokenIssuance"] is True
    principal = doc["resources"]["principal"]
    assert principal["type"] == "Microsoft.Graph/servicePrincipals"
    assert principal["config"]["appRoleAssignmentRequired"] is True
    # The role is the one the app checks; its client id is what App Service Authentication signs in with.
    main = parsed()["infra/main.bicep"]
    assert main["parameters"]["operatorRole"]["default"] == OpsSettings().operator_role == "Bridge.Operator"
    module = main["modules"]["operatorApp"]
    assert (
        module["detail"]["path"] == "modules/operator-app.bicep"
        and module["config"]["condition"] == "createOperatorApp"
    )
    assert module["config"]["config"]["params"]["operatorRole"] == "operatorRole"
    passed = json.dumps(main["modules"]["functionApp"]["config"]["params"]["operatorClientId"])
    assert "operatorApp" in passed and "clientId" in passed


def test_the_workbook_reads_the_metrics_the_bridge_emits() -> None:
    workbook = json.loads((INFRA / "workbook.json").read_text())
    queries = "\n".join(i["content"].get("query", "") for i in workbook["items"] if i["type"] == 3)
    assert "bridge.apply.outcomes" in queries and "bridge.apply.latency" in queries
    for outcome in ("applied", "error", "conflict", "held"):
        assert f"'{outcome}'" in queries
    assert "loadTextContent('../workbook.json')" in (INFRA / "modules" / "workbook.bicep").read_text()
    assert {OUTCOMES_METRIC, LATENCY_METRIC} == {"bridge.apply.outcomes", "bridge.apply.latency"}  # as recorded


def test_alert_notifications_have_their_own_queue() -> None:
    config = json.loads((INFRA / "servicebus-entities.json").read_text())
    queues = {q["Name"]: q["Properties"] for q in config["UserConfig"]["Namespaces"][0]["Queues"]}
    assert queues["notifications"]["RequiresSession"] is False and queues["notifications"]["MaxDeliveryCount"] >= 5
