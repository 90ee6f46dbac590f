"""Where a change's latency goes, in stages, read from a dev host log (`bench/apply.py` keeps its log in /tmp).

`python bench/latency_stages.py [LOG [FROM TO]]` (epoch seconds; by default the newest apply log, whole). Wall-clock
p95 swings with the machine's load; the stages show which part of a session lane's cycle a change waited in, which
is steadier. For each invocation's first message (its log line names it) joined to the change's apply line:

- before the queue: the person's write (the notification's time) → queued on Service Bus (the broker's time):
  the simulator's webhook delivery and ingest;
- on the queue: until a receive of its session's receiver returned it — waiting for the lane's previous cycle;
- gathering the batch: `minMessageBatchSize` / `maxBatchWaitTime` (host.json);
- the function, until the change's apply line (its target write and ledger save), then the settlements.
"""

from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STAGES = ("before the queue", "on the queue", "gathering the batch", "the function, to its line", "settling")
_APPLIED = re.compile(r'"event_id": "([^"]+)".*"outcome": "applied".*"writes": ([0-9]+).*"latency_ms": ([0-9.]+)')
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass
class Traced:
    total: float
    stages: tuple[float, ...]
    batch: int


def _logged_at(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # the dev host's local time


def pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * share) - 1)]


def trace(lines: list[str], since: float = 0.0, until: float = float("inf")) -> tuple[list[float], list[Traced]]:
    """Every applied change's latency (ms) in the window, and the stages of those first in their invocation."""
    applied: dict[str, tuple[float, float]] = {}
    invocations: list[dict[str, str]] = []
    for line in lines:
        if '"outcome": "applied"' in line:
            m = _APPLIED.search(line)
            if m and m.group(2) != "0" and since <= (at := _logged_at(line)) <= until:
                applied[m.group(1)] = (at, float(m.group(3)))
        elif "trigger=servicebus outcome=succeeded" in line and "started_at=" in line:
            invocations.append(dict(_FIELD.findall(line)))
    traced = []
    for fields in invocations:
        if fields.get("message_id") not in applied or float(fields.get("enqueued_at", 0)) <= 0:
            continue
        at, latency = applied[fields["message_id"]]
        occurred, started = at - latency / 1000, float(fields["started_at"])
        stages = (
            (float(fields["enqueued_at"]) - occurred) * 1000,
            float(fields["queued_ms"]),
            float(fields["batch_ms"]),
            (at - started) * 1000,
            float(fields["settle_ms"]),
        )
        traced.append(Traced(latency, stages, int(fields["messages"])))
    return [latency for _, latency in applied.values()], traced


def report(log: Path, since: float = 0.0, until: float = float("inf")) -> str:
    latencies, traced = trace(log.read_text(errors="replace").splitlines(), since, until)
    if not traced:
        return f"stages: no traced invocation in {log}"
    out = [
        f"stages of {len(traced)} changes, each first in its invocation, of {len(latencies)} applied "
        f"(ms: median, p95, mean; mean of the slowest 10%):"
    ]
    slow = [t for t in traced if t.total >= pct([t.total for t in traced], 0.9)]
    rows = [("change to target", [t.total for t in traced], [t.total for t in slow])]
    rows += [(name, [t.stages[i] for t in traced], [t.stages[i] for t in slow]) for i, name in enumerate(STAGES)]
    rows.append(("messages in its batch", [float(t.batch) for t in traced], [float(t.batch) for t in slow]))
    for name, values, slowest in rows:
        out.append(
            f"  {name:27s} {statistics.median(values):6.0f} {pct(values, 0.95):6.0f} {statistics.mean(values):6.0f}"
            f"   {statistics.mean(slowest):6.0f}"
        )
    return "\n".join(out)


def main(args: list[str]) -> None:
    logs = sorted(Path("/tmp").glob("bench-apply-devhost-*.log"), key=lambda p: p.stat().st_mtime)
    log = Path(args[0]) if args else (logs[-1] if logs else None)
    if log is None:
        print("stages: no dev host log (run bench/apply.py first)")
        return
    print(report(log, *(float(a) for a in args[1:3])))


if __name__ == "__main__":
    main(sys.argv[1:])
