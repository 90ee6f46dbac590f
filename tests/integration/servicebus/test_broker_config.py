"""The broker refuses an entity config it cannot honour at start-up, instead of ignoring part of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from local.processes import ROOT, free_port, python_module


def _start(config: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(config))
    command = python_module("local.servicebus", "--config", str(path), "--port", str(free_port()))
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)


def test_a_config_with_topics_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    topic = {"Name": "orders", "Properties": {}, "Subscriptions": [{"Name": "audit", "Properties": {}}]}
    namespace = {"Name": "sbemulatorns", "Queues": [{"Name": "changes"}], "Topics": [topic]}
    result = _start({"UserConfig": {"Namespaces": [namespace]}}, tmp_path)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "topics are not supported by the local broker" in lines[0] and "orders" in lines[0]
