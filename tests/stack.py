"""Test helpers that start real local-stack processes on free ports and stop them by pid."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local.processes import (
    ROOT,
    AzuritePorts,
    Service,
    emulator_connection,
    free_port,
    python_module,
    start,
    start_azurite,
)

LOG_DIR = Path(tempfile.gettempdir()) / "sync-bridge-test-logs"


def log_file(name: str):  # type: ignore[no-untyped-def]
    LOG_DIR.mkdir(exist_ok=True)
    return open(LOG_DIR / f"{name}-{os.getpid()}.log", "ab")  # closed when the process stops


@contextmanager
def azurite() -> Iterator[AzuritePorts]:
    ports = AzuritePorts.free()
    service = start_azurite(ports, output=log_file("azurite"))
    try:
        yield ports
    finally:
        service.stop()


@contextmanager
def dev_host(env: Mapping[str, str], app: str = "function_app:app", root: Path = ROOT) -> Iterator[str]:
    """A dev host serving `app`; yields its base URL. `env` overrides the local settings file."""
    port = free_port()
    service: Service = start(
        "dev host",
        python_module("local.host", "--app", app, "--port", str(port), "--root", str(root)),
        (port,),
        env={"PYTHONPATH": str(ROOT), **env},
        output=log_file("devhost"),
    )
    try:
        service.wait_ready(30)
        yield f"http://127.0.0.1:{port}"
    finally:
        service.stop()


@contextmanager
def broker(config: Path) -> Iterator[str]:
    """The local Service Bus broker with `config`; yields the emulator connection string."""
    port = free_port()
    service = start(
        "servicebus",
        python_module("local.servicebus", "--config", str(config), "--port", str(port)),
        (port,),
        output=log_file("servicebus"),
    )
    try:
        service.wait_ready(30)
        yield emulator_connection(port)
    finally:
        service.stop()


SIM_TOKEN = "test-bearer-token"


@contextmanager
def simulator(kind: str, seed: bool = True, tls: bool = False) -> Iterator[str]:
    """The Dataverse or F&O simulator (in-memory SQLite); yields its base URL. With `tls`, it serves HTTPS with a
    certificate from a CA made at start-up, written to `sim_ca_file(url)` for clients to trust."""
    port = free_port()
    args = ["--port", str(port)] + (["--seed"] if seed else [])
    if tls:
        args += ["--tls", "--ca-file", str(sim_ca_file(f"https://127.0.0.1:{port}"))]
    service = start(
        f"{kind} simulator",
        python_module(f"local.sims.{kind}", *args),
        (port,),
        env={"PYTHONPATH": str(ROOT), "LOCAL_BEARER_TOKEN": SIM_TOKEN},
        output=log_file(f"sim-{kind}"),
    )
    try:
        service.wait_ready(30)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        service.stop()
        if tls:
            sim_ca_file(f"https://127.0.0.1:{port}").unlink(missing_ok=True)


def sim_ca_file(url: str) -> Path:
    """Where a TLS simulator started by `simulator(tls=True)` wrote its CA certificate."""
    return LOG_DIR / f"sim-ca-{url.rsplit(':', 1)[1].split('/')[0]}.pem"


@dataclass
class DevHost:
    """A dev host that a test can crash (SIGKILL, no goodbye to the broker or storage) and start again on the same
    port with the same settings, so the apps' webhook registrations still reach it."""

    env: Mapping[str, str]
    port: int
    app: str = "function_app:app"
    root: Path = ROOT
    service: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.service = start(
            "dev host",
            python_module("local.host", "--app", self.app, "--port", str(self.port), "--root", str(self.root)),
            (self.port,),
            env={"PYTHONPATH": str(ROOT), **self.env},
            output=log_file("devhost"),
        )
        self.service.wait_ready(30)

    def kill(self) -> None:
        """SIGKILL to the host's process group: it dies mid-whatever, as in a crash or an OOM kill."""
        if self.service is not None and self.service.process.poll() is None:
            try:
                os.killpg(self.service.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.service.process.wait(10)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@contextmanager
def restartable_dev_host(env: Mapping[str, str], app: str = "function_app:app") -> Iterator[DevHost]:
    host = DevHost(env, free_port(), app)
    try:
        host.start()
        yield host
    finally:
        host.stop()
