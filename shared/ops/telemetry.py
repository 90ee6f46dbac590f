"""Metrics and traces through OpenTelemetry to Application Insights, only when APPLICATIONINSIGHTS_CONNECTION_STRING
is set (`azure-monitor-opentelemetry`); locally nothing is configured, so the OpenTelemetry API is a no-op and
nothing is sent.

Counters per map and outcome (`bridge.apply.outcomes`: applied, skipped-* by reason, conflict, error, held,
deferred) and a latency histogram (`bridge.apply.latency`, ms from the source's change to the target write). Traces: the
distro instruments the Azure SDKs (a Service Bus send carries the W3C `traceparent` as `Diagnostic-Id`) and httpx
(the target writes); with host.json `"telemetryMode": "OpenTelemetry"` and `PYTHON_ENABLE_OPENTELEMETRY=true` (set
by the Bicep) the Functions host hands each invocation's trace context to the worker, so one operation id runs from
the webhook through Service Bus to the target write (Microsoft Learn, "Use OpenTelemetry with Azure Functions").
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

from opentelemetry import metrics

log = logging.getLogger("ops.telemetry")
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
OUTCOMES_METRIC = "bridge.apply.outcomes"
LATENCY_METRIC = "bridge.apply.latency"
_configured = False


def configure() -> bool:
    """Once per process: Azure Monitor as the OpenTelemetry exporter, when a connection string is set."""
    global _configured
    if _configured or not os.environ.get(CONNECTION_SETTING):
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    # The Functions host already records requests; our meters, the Azure SDKs' and httpx's spans are added.
    configure_azure_monitor(logger_name="sync", enable_live_metrics=False)
    _configured = True
    log.info("telemetry: Azure Monitor OpenTelemetry configured")
    return True


@cache
def _instruments() -> tuple[Any, Any]:
    meter = metrics.get_meter("bridge.apply")
    outcomes = meter.create_counter(OUTCOMES_METRIC, unit="1", description="Apply outcomes per map")
    latency = meter.create_histogram(
        LATENCY_METRIC, unit="ms", description="From the source's change to the target write, per map"
    )
    return outcomes, latency


def record_outcome(map_name: str, outcome: str, latency_ms: float) -> None:
    outcomes, latency = _instruments()
    attributes = {"map": map_name, "outcome": outcome}
    outcomes.add(1, attributes)
    if outcome in ("applied", "conflict"):
        latency.record(latency_ms, {"map": map_name})
