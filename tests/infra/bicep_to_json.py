"""Run by the infra virtual environment (pycep-parser lives there): every .bicep under a folder, parsed, as JSON on
stdout — {path: parsed} or {path: {"error": message}}.

pycep-parser 0.5 predates Bicep's `extension` statement (the Microsoft Graph extension, `modules/operator-app.bicep`):
such lines are taken out before parsing — only a bare alias or a registry reference, nothing else — and listed under
"extensions"; the rest of the file must parse as any other."""

import json
import re
import sys
from pathlib import Path

from pycep import BicepParser

EXTENSION = re.compile(r"^extension (\w+|'br:[^']+')[ \t]*$", re.M)
parser = BicepParser()
out: dict[str, object] = {}
for path in sorted(Path(sys.argv[1]).rglob("*.bicep")):
    text = path.read_text()
    extensions = EXTENSION.findall(text)
    try:
        parsed = parser.parse(text=EXTENSION.sub("", text))
    except Exception as exc:  # a parse error of any kind is the finding
        out[path.as_posix()] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    out[path.as_posix()] = {**parsed, "extensions": extensions} if extensions else parsed
print(json.dumps(out, default=str))
