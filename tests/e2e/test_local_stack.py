"""`python -m local` (what `make run` runs): the whole stack comes up healthy and Ctrl-C leaves no process behind."""

import os
import signal
import subprocess
import sys
import time

import httpx

from local.processes import ROOT, free_port
from tests.stack import log_file


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    pairs = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in pairs if pp == parent]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(stat) and not stat.startswith("Z")


def test_the_stack_starts_healthy_and_ctrl_c_stops_everything() -> None:
    host_port, broker_port = free_port(), free_port()
    azurite = ",".join(str(free_port()) for _ in range(3))
    argv = [sys.executable, "-m", "local", "--host-port", str(host_port), "--broker-port", str(broker_port)]
    argv += ["--dataverse-port", str(free_port()), "--fno-port", str(free_port())]
    stack = subprocess.Popen(
        [*argv, "--azurite-ports", azurite], cwd=ROOT, stdout=log_file("local-stack"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.5)
            try:
                status = httpx.get(f"http://127.0.0.1:{host_port}/api/health", timeout=10).status_code
            except httpx.HTTPError:
                pass
        assert status == 200
        children = _children(stack.pid)
        assert len(children) >= 3  # Azurite, the broker, the dev host
        stack.send_signal(signal.SIGINT)
        assert stack.wait(30) == 0
        time.sleep(0.5)
        assert [p for p in children if _alive(p)] == []
    finally:
        if stack.poll() is None:
            stack.kill()
