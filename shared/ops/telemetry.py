"""Metrics and traces through OpenTelemetry to Application Insights, only when APPLICATIONINSIGHTS_CONNECTION_STRING
is set (`azure-monitor-opentelemetry`); locally nothing is configured, so the OpenTelemetry API is a no-op and
nothing is sent.

Counters per map and outcome (`bridge.apply.outcomes`: applied, skipped-* by reason, conflict, error, held,
deferred) and a latency histogram (`bridge.apply.latency`, ms from the source's change to the target write). The
Azure SDKs' own spans (Service Bus send and receive carry `Diagnostic-Id`/`traceparent`, the HTTP writes through
httpx) join the Functions host's operation, so one operation id runs from the webhook through Service Bus to the
target write; the apply span carries the change's correlation id as well.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from opentelemetry import metrics, trace

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


@contextmanager
def span(name: str, correlation_id: str | None, **attributes: str) -> Iterator[None]:
    """A span in the current operation (a no-op without a configured provider)."""
    tracer = trace.get_tracer("bridge")
    with tracer.start_as_current_span(name, attributes={"bridge.correlation_id": correlation_id or "", **attributes}):
        yield
