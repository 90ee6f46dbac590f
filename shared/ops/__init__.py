"""The operator's side: status figures, replay, dismiss, conflict resolution, dead letters, alerts, telemetry."""
