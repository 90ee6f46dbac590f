"""What the OS can tell about a process or a port: who holds a listening port, and is pid N still the process we
started (its command line and start time), so that we only ever stop processes that are really ours.

Linux reads /proc; elsewhere every answer is "cannot tell" (None or empty), and callers fall back to being careful.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


@dataclass(frozen=True)
class Identity:
    """A process as it was when we started it: a pid alone can be reused by another program."""

    pid: int
    cmdline: tuple[str, ...]
    started: int  # clock ticks after boot (/proc/<pid>/stat field 22)

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "cmdline": list(self.cmdline), "started": self.started}

    @classmethod
    def from_json(cls, data: object) -> Identity | None:
        if not isinstance(data, dict):
            return None
        pid, cmdline, started = data.get("pid"), data.get("cmdline"), data.get("started")
        if not isinstance(pid, int) or not isinstance(cmdline, list) or not isinstance(started, int):
            return None
        return cls(pid, tuple(str(part) for part in cmdline), started)


def identity(pid: int) -> Identity | None:
    """The live process `pid` (None if it is gone, a zombie, or /proc cannot say)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) onwards
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return Identity(pid, tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part), int(fields[19]))


def is_still(recorded: Identity) -> bool:
    """Is the process we recorded still running as itself (same command line, same start)?"""
    return identity(recorded.pid) == recorded


def describe(pid: int) -> str:
    found = identity(pid)
    return f"pid {pid}: {' '.join(' '.join(found.cmdline).split())[:160]}" if found else f"pid {pid}"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def port_holders(port: int) -> list[int]:
    """The pids with a socket listening on `port` (empty when none, or when the OS will not say)."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not inodes:
        return []
    holders = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        if _socket_links(entry / "fd") & inodes:
            holders.append(int(entry.name))
    return sorted(holders)


def _socket_links(fd_dir: Path) -> set[str]:
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return set()  # gone meanwhile, or not ours to read
    links = set()
    for fd in fds:
        try:
            links.add(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return links


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
