"""Metrics: nothing is configured (so nothing is sent) without APPLICATIONINSIGHTS_CONNECTION_STRING; the
counters and the latency histogram carry the map and the outcome."""

from __future__ import annotations

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

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
