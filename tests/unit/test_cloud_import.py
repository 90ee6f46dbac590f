"""`import function_app` must work with only requirements.txt installed (the cloud host's view)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
DEV_ONLY = ["aiohttp", "proton", "pytest", "hypothesis", "local"]


def test_function_app_imports_without_dev_dependencies() -> None:
    probe = (
        "import sys, function_app\n"
        f"bad = [m for m in {DEV_ONLY!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(function_app.app.get_functions()))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 1


def test_requirements_are_pinned_and_exclude_dev_tools() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all("==" in line for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert not names & {"pytest", "aiohttp", "python-qpid-proton", "ruff", "mypy"}
