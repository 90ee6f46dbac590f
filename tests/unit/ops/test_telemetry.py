"""Metrics: nothing is configured (so nothing is sent) without APPLICATIONINSIGHTS_CONNECTION_STRING; the
counters and the latency histogram carry the map and the outcome. Traces: the apply span continues the trace the
change was queued in, and the requests to the apps carry it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry import metrics, trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.events.model import ChangeEvent, Operation, Side
from shared.ops import telemetry


def test_nothing_is_configured_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(telemetry.CONNECTION_SETTING, raising=False)
    assert telemetry.configure() is False


def test_outcomes_are_counted_per_map_and_latency_recorded() -> None:
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    telemetry.record_outcome("customers", "applied", 120.0)
    telemetry.record_outcome("customers", "applied", 80.0)
    telemetry.record_outcome("vendors", "skipped-echo", 5.0)
    data = reader.get_metrics_data()
    assert data is not None
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    counts = {(p.attributes["map"], p.attributes["outcome"]): p.value
              for p in found[telemetry.OUTCOMES_METRIC].data.data_points}  # type: ignore[index]  # fmt: skip
    assert counts == {("customers", "applied"): 2, ("vendors", "skipped-echo"): 1}
    (latency,) = found[telemetry.LATENCY_METRIC].data.data_points
    assert latency.attributes == {"map": "customers"} and latency.sum == 200.0 and latency.count == 2  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """An SDK tracer provider (as Azure Monitor's distro sets one) exporting to memory. The global provider can be
    set once per process: a provider set before is reused."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _event(traceparent: str | None) -> ChangeEvent:
    return ChangeEvent(event_id="e1", source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
                       row_id="C1", occurred_at=datetime.now(UTC), traceparent=traceparent)  # fmt: skip


def test_the_apply_span_and_its_requests_continue_the_trace_received_at_ingest(spans: InMemorySpanExporter) -> None:
    spans.clear()
    sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with telemetry.ingest_span({"Traceparent": sent}) as queued:
        pass
    assert queued.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    with telemetry.apply_span(_event(queued)):
        carrier: dict[str, str] = {}
        inject(carrier)  # what the connectors put on every request to the apps
    (ingest,) = [s for s in spans.get_finished_spans() if s.name == "ingest"]
    (apply,) = [s for s in spans.get_finished_spans() if s.name == "apply"]
    trace_id = int("0af7651916cd43dd8448eb211c80319c", 16)
    assert ingest.context is not None and apply.context is not None and apply.parent is not None
    assert ingest.context.trace_id == apply.context.trace_id == trace_id
    assert apply.parent.span_id == ingest.context.span_id  # the ingest span, carried on the queued change
    assert carrier["traceparent"].split("-")[1:3] == [f"{trace_id:032x}", f"{apply.context.span_id:016x}"]
    assert apply.attributes is not None and apply.attributes["bridge.event_id"] == "e1"


def test_a_trace_is_created_at_ingest_when_none_arrives() -> None:
    with telemetry.ingest_span({}) as first:
        pass
    assert first.startswith("00-") and len(first.split("-")[1]) == 32 and int(first.split("-")[1], 16) != 0
    with telemetry.ingest_span({}) as third:
        pass
    assert third.split("-")[1] != first.split("-")[1]
    with telemetry.apply_span(_event(third)):
        carrier: dict[str, str] = {}
        inject(carrier)
    assert carrier["traceparent"].split("-")[1] == third.split("-")[1]
