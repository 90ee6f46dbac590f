"""Loads `Values` from local.settings.json (else the committed example) into the environment, as Core Tools does.

Variables already set in the environment win, so a test or a shell can override any setting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class LocalSettingsError(ValueError):
    pass


def settings_path(root: Path = ROOT) -> Path:
    real = root / "local.settings.json"
    return real if real.exists() else root / "local.settings.example.json"


def read_values(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise LocalSettingsError(f"{path.name} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    values = data.get("Values", {}) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{path.name}: 'Values' must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def load_into_environment(root: Path = ROOT) -> Path:
    path = settings_path(root)
    for key, value in read_values(path).items():
        os.environ.setdefault(key, value)
    return path
