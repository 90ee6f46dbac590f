"""Test helpers that start real local-stack processes on free ports and stop them by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from local.processes import (
    ROOT,
    AzuritePorts,
    Service,
    StartupError,
    emulator_connection,
    free_port,
    python_module,
    start,
    start_azurite,
)

T = TypeVar("T")
LOG_DIR = Path(tempfile.gettempdir()) / "sync-bridge-test-logs"


def log_file(name: str):  # type: ignore[no-untyped-def]
    LOG_DIR.mkdir(exist_ok=True)
    return open(LOG_DIR / f"{name}-{os.getpid()}.log", "ab")  # closed when the process stops


# A launcher picks fresh free ports, starts its process without waiting for it, and says what the test gets (a URL,
# a connection string, ports). Launchers are started together and waited for together: the stack's processes spend
# their start-up importing and listening, which they do as well side by side as one after the other.
Launcher = Callable[[], tuple[Service, T]]
START_ATTEMPTS = 3  # a free port can be taken between our choosing it and the process binding it: new ports, again
READY_SECONDS = 60.0  # a bound for a broken start, not a wait: a busy machine may take long


@contextmanager
def launched(*launchers: Launcher[Any]) -> Iterator[list[Any]]:
    """Starts every launcher's process at once, waits until each is ready (starting again, on new ports, one that
    exits while starting), yields their values in order, and stops them all by pid — together — however the block
    ends."""
    started: list[tuple[Service, Any]] = []
    try:
        for launcher in launchers:
            started.append(launcher())
        for i, launcher in enumerate(launchers):
            for attempt in range(START_ATTEMPTS):
                try:
                    started[i][0].wait_ready(READY_SECONDS)
                    break
                except StartupError as exc:
                    started[i][0].stop()
                    if "exited" not in str(exc) or attempt == START_ATTEMPTS - 1:
                        raise
                    started[i] = launcher()
        yield [value for _, value in started]
    finally:
        stop_together([service for service, _ in started])


def stop_together(services: Sequence[Service]) -> None:
    """SIGTERM to every service's process group at once, then each gets its own grace period (counted from that
    signal) before SIGKILL to its group: stopping a stack takes its slowest member's time, not the sum."""
    signalled = time.monotonic()
    for service in services:
        if service.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service.pid, signal.SIGTERM)
    for service in services:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(max(0.0, signalled + service.grace_seconds - time.monotonic()))
    for service in services:  # what is left of each group, grandchildren too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.pid, signal.SIGKILL)
    for service in services:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(2)


AZURITE_GRACE_SECONDS = 0.5  # in memory, nothing to write: its node process lingers after SIGTERM, not our wait


def _azurite() -> tuple[Service, AzuritePorts]:
    ports = AzuritePorts.free()
    service = start_azurite(ports, output=log_file("azurite"), ready=False)
    service.grace_seconds = AZURITE_GRACE_SECONDS
    return service, ports


def _broker(config: Path) -> Launcher[str]:
    def launch() -> tuple[Service, str]:
        port = free_port()
        argv = python_module("local.servicebus", "--config", str(config), "--port", str(port))
        return start("servicebus", argv, (port,), output=log_file("servicebus")), emulator_connection(port)

    return launch


def _simulator(kind: str, seed: bool = True, tls: bool = False) -> Launcher[str]:
    def launch() -> tuple[Service, str]:
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
        return service, f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    return launch


def _dev_host(env: Mapping[str, str], app: str = "function_app:app", root: Path = ROOT) -> Launcher[str]:
    def launch() -> tuple[Service, str]:
        port = free_port()
        service = start(
            "dev host",
            python_module("local.host", "--app", app, "--port", str(port), "--root", str(root)),
            (port,),
            env={"PYTHONPATH": str(ROOT), **env},
            output=log_file("devhost"),
        )
        return service, f"http://127.0.0.1:{port}"

    return launch


@contextmanager
def azurite() -> Iterator[AzuritePorts]:
    with launched(_azurite) as (ports,):
        yield ports


@contextmanager
def dev_host(env: Mapping[str, str], app: str = "function_app:app", root: Path = ROOT) -> Iterator[str]:
    """A dev host serving `app`; yields its base URL. `env` overrides the local settings file."""
    with launched(_dev_host(env, app, root)) as (url,):
        yield url


@contextmanager
def broker(config: Path) -> Iterator[str]:
    """The local Service Bus broker with `config`; yields the emulator connection string."""
    with launched(_broker(config)) as (connection,):
        yield connection


SIM_TOKEN = "test-bearer-token"


@contextmanager
def simulator(kind: str, seed: bool = True, tls: bool = False) -> Iterator[str]:
    """The Dataverse or F&O simulator (in-memory SQLite); yields its base URL. With `tls`, it serves HTTPS with a
    certificate from a CA made at start-up, written to `sim_ca_file(url)` for clients to trust."""
    with launched(_simulator(kind, seed, tls)) as (url,):
        try:
            yield url
        finally:
            if tls:
                sim_ca_file(url).unlink(missing_ok=True)


@dataclass
class Apps:
    """What a sync stack runs besides its dev host: the broker, both simulators and (unless given) its Azurite."""

    storage: AzuritePorts
    servicebus: str
    dataverse_url: str
    fno_url: str


@contextmanager
def apps(broker_config: Path, storage: AzuritePorts | None = None) -> Iterator[Apps]:
    """The broker, both seeded simulators and, when `storage` is None, an Azurite of its own — started together."""
    launchers: list[Launcher[Any]] = [_broker(broker_config), _simulator("dataverse"), _simulator("fno")]
    if storage is None:
        launchers.append(_azurite)
    with launched(*launchers) as values:
        servicebus, dataverse_url, fno_url, *own = values
        yield Apps(own[0] if own else storage, servicebus, dataverse_url, fno_url)  # type: ignore[arg-type]


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
        for attempt in range(START_ATTEMPTS):
            try:
                host.start()
                break
            except StartupError as exc:
                host.stop()
                if "exited" not in str(exc) or attempt == START_ATTEMPTS - 1:
                    raise
                host.port = free_port()  # taken meanwhile (see `launched`): a restart later keeps the one that worked
        yield host
    finally:
        host.stop()
