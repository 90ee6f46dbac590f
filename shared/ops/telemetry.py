"""Metrics and traces through OpenTelemetry to Application Insights, only when APPLICATIONINSIGHTS_CONNECTION_STRING
is set (`azure-monitor-opentelemetry`); locally nothing is configured, so the OpenTelemetry API is a no-op and
nothing is sent.

Counters per map and outcome (`bridge.apply.outcomes`: applied, skipped-* by reason, conflict, error, held,
deferred) and a latency histogram (`bridge.apply.latency`, ms from the source's change to the target write). Traces:
with host.json `"telemetryMode": "OpenTelemetry"` and `PYTHON_ENABLE_OPENTELEMETRY=true` (set by the Bicep) the
Functions host hands each invocation's trace context to the worker (Microsoft Learn, "Use OpenTelemetry with Azure
Functions"); ingest stamps that trace on every change it queues (`ChangeEvent.traceparent`), apply continues it
(`apply_span`) and the connectors send it on (`traceparent`), so one operation id runs from the webhook through
Service Bus to the target write, whatever the trigger's own span is.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.events.model import ChangeEvent

log = logging.getLogger("ops.telemetry")
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
OUTCOMES_METRIC = "bridge.apply.outcomes"
LATENCY_METRIC = "bridge.apply.latency"
_configured = False
_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("bridge")


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


def traceparent(span_context: SpanContext) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


@contextmanager
def ingest_span(headers: Mapping[str, str]) -> Iterator[str]:
    """The trace a notification's changes carry (`ChangeEvent.traceparent`): the running invocation's (in Azure
    the Functions host's request span), else the `traceparent` the caller sent, else a new one — created here,
    so that even without Application Insights one id follows the change to the target write."""
    context = None
    if not trace.get_current_span().get_span_context().is_valid:
        sent = {k.lower(): v for k, v in headers.items() if k.lower() == "traceparent"}
        context = _propagator.extract(sent) if sent else None
    with _tracer.start_as_current_span("ingest", context=context, kind=SpanKind.CONSUMER) as span:
        found = span.get_span_context()
        if found.is_valid:
            yield traceparent(found)
            return
        created = SpanContext(random.getrandbits(128), random.getrandbits(64), is_remote=False,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))  # fmt: skip
        with trace.use_span(NonRecordingSpan(created)):
            yield traceparent(created)


@contextmanager
def apply_span(event: ChangeEvent) -> Iterator[None]:
    """Apply runs in the trace the change was queued in: its span's parent is the ingest's, and every request to
    the apps sends it on (`traceparent`, `shared.connectors.http`)."""
    context = _propagator.extract({"traceparent": event.traceparent}) if event.traceparent else None
    attributes = {"bridge.event_id": event.event_id, "bridge.entity": event.entity, "bridge.source": str(event.source)}
    with _tracer.start_as_current_span("apply", context=context, kind=SpanKind.CONSUMER, attributes=attributes):
        yield
