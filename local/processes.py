"""Starting and stopping the local stack's processes: free ports, readiness by TCP, stop by process group.

Used by `python -m local` and by the test fixtures, so both start components the same way. Every child runs in its
own process group (so stopping it reaches its own children) and, on Linux, gets SIGTERM if the process that started
it dies — even by SIGKILL (`prctl(PR_SET_PDEATHSIG)`; see `local/watchdog.py` for the grandchildren).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from local import procinfo

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StartupError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Something answers on the port, or we could not listen on it ourselves (as our servers would)."""
    if port_open(port, host):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Service:
    """A child process of the stack, in its own process group so that stopping it stops its children too."""

    name: str
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...] = field(default=())
    grace_seconds: float = 5.0  # SIGTERM, then SIGKILL after this long

    @property
    def pid(self) -> int:
        return self.process.pid  # also its process group id (start_new_session)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready when every port answers *and* (where the OS can tell) is held by this process group: a port that
        answers because someone else holds it is not this service being ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartupError(f"{self.name} exited with code {self.process.returncode} while starting")
            if all(port_open(p) and self._holds(p) for p in self.ports):
                return
            time.sleep(0.05)
        self.stop()
        raise StartupError(f"{self.name} did not listen on {self.ports} within {timeout:g} s")

    def _holds(self, port: int) -> bool:
        holders = procinfo.port_holders(port)
        return not holders or any(procinfo.process_group(pid) == self.pid for pid in holders)

    def stop(self) -> None:
        stop_all([self], self.grace_seconds)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_all(services: Sequence[Service], grace_seconds: float = 5.0, first: Sequence[Service] = ()) -> None:
    """Stop services together: SIGTERM to `first` (they get up to half the grace period to finish their work while
    what they depend on is still up), then to every process group at once; SIGKILL what is left when the grace period
    is over — of each group, not only its leader, so no grandchild keeps a port. Safe to call again."""
    started = time.monotonic()
    for stage, wait in ((first, grace_seconds / 2), (services, grace_seconds)):
        for service in stage:
            if service.process.poll() is None:
                _signal_group(service.pid, signal.SIGTERM)
        for service in stage:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(max(0.0, started + wait - time.monotonic()))
    for service in services:
        _signal_group(service.pid, signal.SIGKILL)  # stragglers, and any child left in the group
    for service in services:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(2)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Resolved before any fork, so the child between fork and exec only makes the call (no dlsym, no lock to take).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec. The death signal survives exec but is tied to the thread that
    started the child: start children from the main thread."""
    parent = os.getppid()
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: nobody would ever signal us
        os.kill(os.getpid(), signal.SIGTERM)


def start(
    name: str,
    argv: Sequence[str],
    ports: Sequence[int],
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | int | None = None,
    cwd: Path = ROOT,
) -> Service:
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT if output is not None and output != subprocess.DEVNULL else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # own process group: stop() reaches grandchildren
        # SIGTERM when we die. The death signal fires when the *thread* that forked the child ends, so a child
        # started from a worker thread (a test's `asyncio.to_thread`) would die with that thread: only the main
        # thread arms it; the other callers stop their children themselves.
        preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
    )
    return Service(name, process, tuple(ports))


# --- Azurite --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AzuritePorts:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002

    @classmethod
    def free(cls) -> AzuritePorts:
        return cls(free_port(), free_port(), free_port())

    def connection_string(self, host: str = "127.0.0.1") -> str:
        account = "devstoreaccount1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint=http://{host}:{self.blob}/{account};QueueEndpoint=http://{host}:{self.queue}/{account};"
            f"TableEndpoint=http://{host}:{self.table}/{account};"
        )


def azurite_argv(ports: AzuritePorts) -> list[str]:
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        raise StartupError("Azurite is not installed: run `npm ci` (make does it for you)")
    return [
        str(binary),
        "--inMemoryPersistence",
        "--extentMemoryLimit", "256",
        "--skipApiVersionCheck",  # the Python SDKs may be newer than Azurite's API version list
        "--silent",
        # Idle connections are closed by the client first: Azurite's 5 s keep-alive is shorter than aiohttp's 15 s
        # (the Table SDK's transport), so a pooled connection could be reused just as Azurite closed it — "Server
        # disconnected" on a PATCH/POST, which azure-core does not retry (not idempotent). Azure keeps them longer.
        "--blobKeepAliveTimeout", "60", "--queueKeepAliveTimeout", "60", "--tableKeepAliveTimeout", "60",
        "--blobHost", "127.0.0.1", "--blobPort", str(ports.blob),
        "--queueHost", "127.0.0.1", "--queuePort", str(ports.queue),
        "--tableHost", "127.0.0.1", "--tablePort", str(ports.table),
    ]  # fmt: skip


def start_azurite(ports: AzuritePorts, output: IO[bytes] | int | None = None, ready: bool = True) -> Service:
    """Azurite; waits until it listens unless `ready` is False (the caller then calls `wait_ready` itself)."""
    service = start("azurite", azurite_argv(ports), (ports.blob, ports.queue, ports.table), output=output)
    service.grace_seconds = 2.0  # Azurite closes its servers at once but its node process may linger
    if ready:
        service.wait_ready()
    return service


def emulator_connection(port: int, host: str = "127.0.0.1") -> str:
    """The Service Bus emulator's connection string, which our local broker accepts as it is."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
