"""`python -m local` (what `make run` runs): the whole stack comes up healthy and quiet, and however it is stopped —
Ctrl-C, Ctrl-C twice, SIGTERM while still starting, SIGHUP, even SIGKILL — nothing it started outlives it or keeps a
port. Ports already taken are reported, not adopted; what a dead earlier run left behind is stopped first."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from local import procinfo
from local.pidfile import STATE_DIR
from local.processes import ROOT, free_port, port_open, python_module, start
from tests.stack import LOG_DIR, log_file

STOP_SECONDS = 10.0  # the whole stack, however busy


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, stat) of every process."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,pgid=,stat="], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return [(int(r[0]), int(r[1]), int(r[2]), r[3]) for r in rows if len(r) >= 4]


def _descendants(pid: int) -> set[int]:
    rows = _processes()
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp, _, _ in rows if pp == parent]
        found |= set(kids)
        frontier += kids
    return found


def _living_in_groups(pgids: set[int]) -> list[int]:
    """Processes (not zombies) still in any of these process groups."""
    return [p for p, _, g, stat in _processes() if g in pgids and not stat.startswith("Z")]


@dataclass
class LocalStack:
    process: subprocess.Popen[bytes]
    output: Path
    ports: list[int]
    seen: set[int] = field(default_factory=set)  # every process it started, as far as we saw

    @property
    def host_port(self) -> int:
        return self.ports[0]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def watch(self) -> None:
        self.seen |= _descendants(self.process.pid)

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.watch()
            assert self.process.poll() is None, f"python -m local exited early:\n{self.text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.host_port}/api/health", timeout=5).status_code == 200:
                    self.watch()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the stack did not become healthy:\n{self.text()}")

    def wait_for_output(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert time.monotonic() < deadline, f"never printed {text!r}:\n{self.text()}"
            assert self.process.poll() is None, f"python -m local exited early:\n{self.text()}"
            self.watch()
            time.sleep(0.2)

    def assert_nothing_left(self, started_some: bool = True, within: float = 3.0) -> None:
        """No process it started is alive (in its process group: grandchildren count), and no port is held."""
        assert self.seen or not started_some, "the test never saw the stack's children"
        deadline = time.monotonic() + within
        while (_living_in_groups(self.seen) or [p for p in self.ports if port_open(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _living_in_groups(self.seen) == [], self.text()
        assert [p for p in self.ports if port_open(p)] == [], self.text()


@contextmanager
def local_stack(*extra: str, ports: dict[str, int] | None = None) -> Iterator[LocalStack]:
    """`python -m local` on free ports; whatever happens in the test, everything it started is killed after."""
    chosen = {name: free_port() for name in ("host", "broker", "blob", "queue", "table", "dataverse", "fno")}
    chosen |= ports or {}
    argv = python_module(
        "local",
        "--host-port", str(chosen["host"]), "--broker-port", str(chosen["broker"]),
        "--azurite-ports", f"{chosen['blob']},{chosen['queue']},{chosen['table']}",
        "--dataverse-port", str(chosen["dataverse"]), "--fno-port", str(chosen["fno"]), *extra,
    )  # fmt: skip
    LOG_DIR.mkdir(exist_ok=True)
    output = LOG_DIR / f"local-stack-{os.getpid()}-{chosen['host']}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    stack = LocalStack(process, output, [chosen["host"], *(v for k, v in chosen.items() if k != "host")])
    try:
        yield stack
    finally:
        stack.watch()
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pgid in stack.seen:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_the_stack_starts_quietly_and_ctrl_c_stops_everything() -> None:
    with local_stack() as stack:
        stack.wait_for_output("Press Ctrl-C to stop.")
        assert len(stack.seen) >= 5  # Azurite, the broker, two simulators, the dev host
        second = subprocess.run(
            [*stack.process.args, "--no-demo"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )  # `make run` again: the ports are this stack's, and it must say so rather than call them ready
        said = second.stdout + second.stderr
        assert second.returncode == 1, said
        assert f"port {stack.host_port} (for the dev host) is already in use by another local stack" in said
        assert f"`python -m local` pid {stack.process.pid}" in said
        assert "The local stack is up" not in said
        time.sleep(4)  # idle: the session receivers' refused links, reconnects… must not print a line each
        stack.watch()
        assert httpx.get(f"http://127.0.0.1:{stack.host_port}/api/health", timeout=10).status_code == 200
        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(STOP_SECONDS + 5) == 0
        stack.assert_nothing_left()
        out = stack.text()
        assert "demo: the order-to-cash loop ran end to end" in out and "synced both ways" in out
        assert "applied customers fno→dataverse" in out  # one short line per applied change
        assert "applied sales_order_lines dataverse→fno" in out and "applied feedback dataverse→fno" in out
        for chatter in ("connection from", "refused", "HTTP Request:", "invocation function=", '{"event": "apply"'):
            assert chatter not in out
        assert "Unclosed" not in out  # the dev host closed the app's clients (its shutdown hook)
        assert not (STATE_DIR / f"stack-{stack.process.pid}.json").exists()  # a clean stop forgets its pid file


def _ctrl_c_twice(stack: LocalStack) -> None:
    stack.wait_healthy()
    stack.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    stack.process.send_signal(signal.SIGINT)


def _sigterm_while_starting(stack: LocalStack) -> None:
    stack.wait_healthy()  # webhooks are being registered and the demo is about to run
    stack.process.send_signal(signal.SIGTERM)


def _sigterm_during_the_demo(stack: LocalStack) -> None:
    stack.wait_for_output("demo: 1. creating customer")
    stack.process.send_signal(signal.SIGTERM)


def _sighup(stack: LocalStack) -> None:
    stack.wait_for_output("Press Ctrl-C to stop.")
    stack.process.send_signal(signal.SIGHUP)


@pytest.mark.parametrize(
    ("extra", "stop"),
    [((), _ctrl_c_twice), ((), _sigterm_while_starting), ((), _sigterm_during_the_demo), (("--no-demo",), _sighup)],
    ids=["ctrl-c-twice", "sigterm-while-starting", "sigterm-during-the-demo", "sighup"],
)
def test_stopping_is_complete_whatever_arrives_meanwhile(extra: tuple[str, ...], stop: object) -> None:
    with local_stack(*extra) as stack:
        assert callable(stop)
        stop(stack)
        signalled = time.monotonic()
        stack.process.wait(STOP_SECONDS + 5)
        assert time.monotonic() - signalled < STOP_SECONDS, stack.text()
        stack.assert_nothing_left()


def test_nothing_outlives_a_killed_stack() -> None:
    with local_stack("--no-demo") as stack:
        stack.wait_healthy()
        time.sleep(1)
        stack.watch()
        stack.process.send_signal(signal.SIGKILL)
        stack.process.wait(5)
        # The parent-death signal (SIGTERM) and the watchdog (SIGKILL after its grace period) stop every group.
        stack.assert_nothing_left(within=STOP_SECONDS)


def test_a_taken_port_is_reported_not_called_ready() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with local_stack(ports={"host": port}) as stack:
            assert stack.process.wait(30) != 0
            out = stack.text()
            assert f"port {port} (for the dev host) is already in use by pid {os.getpid()}" in out
            stack.ports.remove(port)  # ours, still listening
            stack.assert_nothing_left(started_some=False)
            assert "The local stack is up" not in out


def test_what_a_dead_earlier_run_left_running_is_stopped_first() -> None:
    fno_port = free_port()
    argv = python_module("local.sims.fno", "--port", str(fno_port))
    leftover = start("fno simulator", argv, (fno_port,), output=log_file("sim-fno"))
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # the earlier run's owner
    try:
        leftover.wait_ready(30)
        owner, child = procinfo.identity(gone.pid), procinfo.identity(leftover.pid)
        assert owner is not None and child is not None
        gone.kill()
        gone.wait()
        STATE_DIR.mkdir(exist_ok=True)
        pid_file = STATE_DIR / f"stack-{gone.pid}.json"
        pid_file.write_text(
            json.dumps({"owner": owner.to_json(), "children": {"fno simulator": child.to_json()}}), encoding="utf-8"
        )
        with local_stack("--no-demo", ports={"fno": fno_port}) as stack:
            stack.wait_healthy()
            assert leftover.process.wait(10) is not None
            assert f"fno simulator (pid {leftover.pid})" in stack.text()
            assert not pid_file.exists()
            stack.process.send_signal(signal.SIGINT)
            assert stack.process.wait(STOP_SECONDS + 5) == 0
            stack.assert_nothing_left()
    finally:
        leftover.stop()
        if gone.poll() is None:
            gone.kill()
