"""Starting and stopping the local stack's processes: free ports, readiness by TCP, stop by pid.

Used by `python -m local` and by the test fixtures, so both start components the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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


@dataclass
class Service:
    """A child process of the stack, in its own process group so that stopping it stops its children too."""

    name: str
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...] = field(default=())
    grace_seconds: float = 5.0  # SIGTERM, then SIGKILL after this long

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartupError(f"{self.name} exited with code {self.process.returncode} while starting")
            if all(port_open(p) for p in self.ports):
                return
            time.sleep(0.05)
        self.stop()
        raise StartupError(f"{self.name} did not listen on {self.ports} within {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(self.grace_seconds)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.process.wait(5)


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
        stderr=subprocess.STDOUT if output is not None else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # own process group: stop() reaches grandchildren
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
        "--blobHost", "127.0.0.1", "--blobPort", str(ports.blob),
        "--queueHost", "127.0.0.1", "--queuePort", str(ports.queue),
        "--tableHost", "127.0.0.1", "--tablePort", str(ports.table),
    ]  # fmt: skip


def start_azurite(ports: AzuritePorts, output: IO[bytes] | int | None = None) -> Service:
    service = start("azurite", azurite_argv(ports), (ports.blob, ports.queue, ports.table), output=output)
    service.grace_seconds = 2.0  # Azurite closes its servers at once but its node process may linger
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
