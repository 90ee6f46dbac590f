"""Run by the infra virtual environment (pycep-parser lives there): every .bicep under a folder, parsed, as JSON on
stdout — {path: parsed} or {path: {"error": message}}."""

import json
import sys
from pathlib import Path

from pycep import BicepParser

parser = BicepParser()
out: dict[str, object] = {}
for path in sorted(Path(sys.argv[1]).rglob("*.bicep")):
    try:
        out[path.as_posix()] = parser.parse(file_path=path)
    except Exception as exc:  # a parse error of any kind is the finding
        out[path.as_posix()] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out, default=str))
