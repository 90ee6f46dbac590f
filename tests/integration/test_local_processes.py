"""How the local stack's processes are started and stopped, with real processes: groups stopped together and
completely, children that die with their parent, the watchdog, the pid file, ports and who holds them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local import pidfile, procinfo
from local.processes import Service, StartupError, python_module, start, stop_all

STUBBORN = ["sh", "-c", 'trap "" TERM; sleep 60 & wait']  # ignores SIGTERM, and so does its child


def _group_alive(pgid: int) -> bool:
    out = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True, check=True).stdout
    return any(int(g) == pgid and not s.startswith("Z") for g, s in (line.split() for line in out.splitlines()))


def _eventually(condition: object, seconds: float = 10.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def test_services_stop_together_and_completely() -> None:
    services = [start(f"stubborn {n}", STUBBORN, ()) for n in range(3)]
    try:
        time.sleep(0.3)
        began = time.monotonic()
        stop_all(services, grace_seconds=1.0)
        assert time.monotonic() - began < 2.5  # one grace period for all, not one each
        assert all(s.process.poll() is not None for s in services)
        assert not any(_group_alive(s.pid) for s in services)  # the `sleep` grandchildren too
        stop_all(services, grace_seconds=1.0)  # again: nothing to do, no error
    finally:
        for s in services:
            s.process.kill()


PARENT = """
import sys, time
from local.processes import start
child = start("child", ["sleep", "60"], ())
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_dies_with_its_parent_even_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _group_alive(child)
        parent.kill()
        parent.wait()
        assert _eventually(lambda: not _group_alive(child))
    finally:
        parent.kill()


def test_the_watchdog_stops_the_groups_when_its_parent_dies_without_saying_done() -> None:
    stubborn, left_alone = start("stubborn", STUBBORN, ()), start("left alone", ["sleep", "60"], ())
    watchdogs = [subprocess.Popen(python_module("local.watchdog"), stdin=subprocess.PIPE) for _ in range(2)]
    try:
        died, stopped_cleanly = watchdogs
        assert died.stdin is not None and stopped_cleanly.stdin is not None
        stopped_cleanly.communicate(f"{left_alone.pid}\ndone\n".encode(), timeout=10)
        died.stdin.write(f"{stubborn.pid}\n".encode())
        died.stdin.close()  # as when the parent dies: end of input, no `done`
        assert died.wait(15) == 0
        assert not _group_alive(stubborn.pid)
        assert _group_alive(left_alone.pid)
    finally:
        stop_all([stubborn, left_alone], 1.0)
        for w in watchdogs:
            w.kill()


def test_port_holders_names_the_listening_process() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert procinfo.port_holders(port) == [os.getpid()]
    assert procinfo.port_holders(port) == []


def test_ready_means_the_service_itself_listens_not_whoever_holds_the_port() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        service = start("impostor", ["sleep", "30"], (squatter.getsockname()[1],))
        try:
            with pytest.raises(StartupError, match="did not listen"):
                service.wait_ready(1.0)
        finally:
            service.stop()


def _pid_file(directory: Path, owner: procinfo.Identity, child: procinfo.Identity) -> Path:
    path = directory / f"stack-{owner.pid}.json"
    path.write_text(json.dumps({"owner": owner.to_json(), "children": {"broker": child.to_json()}}))
    return path


def test_only_a_dead_runs_own_children_are_leftovers(tmp_path: Path) -> None:
    child: Service = start("child", ["sleep", "60"], ())
    dead = subprocess.Popen(["sleep", "60"])
    try:
        me, it, was = procinfo.identity(os.getpid()), procinfo.identity(child.pid), procinfo.identity(dead.pid)
        assert me is not None and it is not None and was is not None
        dead.kill()
        dead.wait()
        live_run = _pid_file(tmp_path, me, it)
        assert pidfile.leftovers(tmp_path) == []  # its owner (this test) still runs: not ours to touch
        live_run.unlink()
        impostor = procinfo.Identity(it.pid, ("python", "-m", "something.else"), it.started)
        _pid_file(tmp_path, was, impostor)
        assert pidfile.leftovers(tmp_path) == []  # the pid now runs another program: never signalled
        dead_run = _pid_file(tmp_path, was, it)
        found = pidfile.leftovers(tmp_path)
        assert [(f.name, f.process.pid) for f in found] == [("broker", child.pid)]
        pidfile.reap(found, tmp_path, grace_seconds=2.0)
        assert child.process.wait(5) is not None
        assert not dead_run.exists()
    finally:
        child.stop()
        dead.kill()
