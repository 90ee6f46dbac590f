"""The stack's pid file: which processes a running `python -m local` started, so that the next start can stop them
if that run died without doing it — and only them (each is checked by command line and start time first).

One file per run, `.local-data/stack-<pid>.json`, removed by a clean stop. A file whose owner is still running
belongs to another live stack and is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from local import procinfo
from local.processes import ROOT

STATE_DIR = ROOT / ".local-data"


@dataclass
class PidFile:
    path: Path
    owner: procinfo.Identity
    children: dict[str, procinfo.Identity] = field(default_factory=dict)

    @classmethod
    def for_this_process(cls, directory: Path = STATE_DIR) -> PidFile | None:
        me = procinfo.identity(os.getpid())
        return cls(directory / f"stack-{os.getpid()}.json", me) if me else None

    def add(self, name: str, pid: int) -> None:
        found = procinfo.identity(pid)
        if found is not None:
            self.children[name] = found
            self._write()

    def _write(self) -> None:
        data = {"owner": self.owner.to_json(), "children": {n: c.to_json() for n, c in self.children.items()}}
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
            temporary.replace(self.path)
        except OSError:
            pass  # best effort (a read-only checkout): the parent-death signal and the watchdog still apply

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass(frozen=True)
class Leftover:
    name: str
    process: procinfo.Identity


def _read(path: Path) -> tuple[procinfo.Identity | None, list[Leftover]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, []
    if not isinstance(data, dict):
        return None, []
    children = data.get("children")
    found = [
        Leftover(name, child)
        for name, raw in (children.items() if isinstance(children, dict) else ())
        if (child := procinfo.Identity.from_json(raw)) is not None
    ]
    return procinfo.Identity.from_json(data.get("owner")), found


def live_stack_holding(pid: int, directory: Path = STATE_DIR) -> procinfo.Identity | None:
    """The running `python -m local` whose service process group `pid` belongs to, if any."""
    group = procinfo.process_group(pid)
    for path in sorted(directory.glob("stack-*.json")):
        owner, children = _read(path)
        if owner is not None and procinfo.is_still(owner) and any(c.process.pid == group for c in children):
            return owner
    return None


def leftovers(directory: Path = STATE_DIR) -> list[Leftover]:
    """Processes still running from earlier runs that died without stopping them. Forgets runs with none left."""
    found: list[Leftover] = []
    for path in sorted(directory.glob("stack-*.json")):
        owner, children = _read(path)
        if owner is not None and procinfo.is_still(owner):
            continue  # a live stack: not ours to touch
        alive = [c for c in children if procinfo.is_still(c.process)]
        if not alive:
            with contextlib.suppress(OSError):
                path.unlink()
        found += alive
    return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def reap(found: list[Leftover], directory: Path = STATE_DIR, grace_seconds: float = 5.0) -> None:
    """Stop leftovers (each leads its own process group: the group's other members go too) and forget their runs."""
    ours = [f for f in found if procinfo.is_still(f.process)]  # checked once more, just before the signal
    for leftover in ours:
        _signal_group(leftover.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(procinfo.is_still(f.process) for f in ours):
        time.sleep(0.1)
    for leftover in ours:
        _signal_group(leftover.process.pid, signal.SIGKILL)
    leftovers(directory)  # removes the files of runs with nothing left
