"""`python -m local`: starts the whole local stack in the foreground; Ctrl-C, SIGTERM or SIGHUP stops every child.

Default ports are the well-known ones (Azurite 10000-10002, Service Bus 5672, dev host 7071, simulators 7301-7302);
the options move them, e.g. for tests, and point the dev host at whatever was started. A port already in use stops
the start with a message naming it (and its holder); processes an earlier run left behind (known by its pid file in
.local-data/) are stopped first. Stopping is idempotent: a second Ctrl-C, or any signal meanwhile, lets it finish.
Quiet by default (readiness, the demo, one line per applied change, every warning); `--verbose` shows everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from local import pidfile, procinfo
from local.connect import connect_apps
from local.demo import run_demo
from local.processes import (
    ROOT,
    AzuritePorts,
    Service,
    StartupError,
    emulator_connection,
    port_taken,
    python_module,
    start,
    start_azurite,
    stop_all,
)
from local.servicebus.config import DEFAULT_CONFIG
from local.settings_file import load_into_environment
from local.sims.server import DEFAULT_TOKEN


def _wait_healthy(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def function_keys() -> dict[str, str]:
    keys = json.loads(os.environ.get("FUNCTION_KEYS") or "{}")
    return {str(k): str(v) for k, v in keys.items()} if isinstance(keys, dict) else {}


def _three_ports(text: str) -> AzuritePorts:
    try:
        blob, queue, table = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"three ports, blob,queue,table (e.g. 10000,10001,10002), not {text!r}"
        ) from None
    return AzuritePorts(blob, queue, table)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("--host-port", type=int, default=7071)
    parser.add_argument("--broker-port", type=int, default=5672)
    parser.add_argument("--azurite-ports", type=_three_ports, default="10000,10001,10002", help="blob,queue,table")
    parser.add_argument("--dataverse-port", type=int, default=7301)
    parser.add_argument("--fno-port", type=int, default=7302)
    parser.add_argument("--no-demo", action="store_true", help="start the stack without running the demo")
    parser.add_argument(
        "--verbose", action="store_true", help="every log line of every service (connections, requests, invocations)"
    )
    return parser.parse_args()


def say(text: str, problem: bool = False) -> None:
    """Print (problems to stderr), but never fail: after SIGHUP the terminal may be gone, and stopping must go on."""
    try:
        print(text, flush=True, file=sys.stderr if problem else sys.stdout)
    except (OSError, ValueError):
        pass


class StopRequested(KeyboardInterrupt):
    """A signal asked the stack to stop: unwinds whatever start-up step or wait is running. A KeyboardInterrupt, so
    no `except Exception` on the way swallows it, and asyncio re-raises it from whichever task it interrupted."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 6.0  # all services together; then SIGKILL: the whole stack is gone within 10 s


class Stack:
    """The running services, and how they stop: once, completely, whatever signal arrives meanwhile."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.services: list[Service] = []
        self.host: Service | None = None
        self.stopping = False
        self.signalled = False
        self.starting_child = False
        self.pending: int | None = None
        self.pids = pidfile.PidFile.for_this_process()
        self.watchdog = subprocess.Popen(
            python_module("local.watchdog"), cwd=ROOT, stdin=subprocess.PIPE, start_new_session=True
        )

    # --- signals ---------------------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        # Explicit handlers: a stack started in the background inherits SIGINT ignored, and Ctrl-C must still work.
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        if self.stopping or self.signalled:
            _note(f"({signal.Signals(signum).name}: already stopping, please wait)\n")
            return  # the stop under way goes on to the end
        if self.starting_child:
            self.pending = signum
            return
        self.signalled = True
        raise StopRequested(signum)

    # --- services ----------------------------------------------------------------------------------------------------

    def add(self, service: Service) -> Service:
        self.services.append(service)
        if self.pids is not None:
            self.pids.add(service.name, service.pid)
        self._tell_watchdog(f"{service.pid}\n")
        return service

    @contextmanager
    def _starting_child(self) -> Iterator[None]:
        """A signal while a child is being started waits until the child is known, so the stop reaches it too."""
        self.starting_child = True
        try:
            yield
        finally:
            self.starting_child = False
            if self.pending is not None and not self.signalled:
                self.signalled = True
                raise StopRequested(self.pending)

    def start(self, name: str, argv: list[str], ports: tuple[int, ...], env: dict[str, str] | None = None) -> Service:
        with self._starting_child():
            service = self.add(start(name, argv, ports, env=env))
        return service

    def start_azurite(self, ports: AzuritePorts) -> Service:
        output = None if self.verbose else subprocess.DEVNULL  # its start-up banner; its errors still show
        with self._starting_child():
            service = self.add(start_azurite(ports, output=output, ready=False))
        return service

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.services:
            say("\nstopping the local stack…")
        stop_all(self.services, GRACE_SECONDS, first=[self.host] if self.host else [])
        self._tell_watchdog("done\n")
        if self.watchdog.stdin is not None:
            try:
                self.watchdog.stdin.close()
            except OSError:
                pass
        try:
            self.watchdog.wait(2)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
        if self.pids is not None:
            self.pids.remove()
        if self.services:
            say("stopped.")

    def _tell_watchdog(self, line: str) -> None:
        if self.watchdog.stdin is None:
            return
        try:
            self.watchdog.stdin.write(line.encode())
            self.watchdog.stdin.flush()
        except (OSError, ValueError):
            pass  # it died: the parent-death signal and the pid file still cover the children


def _note(text: str) -> None:
    """From a signal handler: one unbuffered write (print could re-enter a buffered write it interrupted)."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError):
        pass


def check_ports(ports: dict[str, int]) -> list[str]:
    """Problems with the ports we are about to use: one plain sentence each (empty when all are free)."""
    problems = []
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            problems.append(f"port {port} is given for both {seen[port]} and {name}")
            continue
        seen[port] = name
        if port_taken(port):
            problems.append(f"port {port} (for {name}) is already in use{_held_by(procinfo.port_holders(port))}")
    return problems


def _held_by(holders: list[int]) -> str:
    if not holders:
        return ""  # the OS would not say
    stack = pidfile.live_stack_holding(holders[0])
    if stack is not None:
        return f" by another local stack: `python -m local` pid {stack.pid} (Ctrl-C there, or kill {stack.pid})"
    return f" by {'; '.join(procinfo.describe(p) for p in holders)}"


def _reap_leftovers() -> None:
    leftovers = pidfile.leftovers()
    if leftovers:
        names = ", ".join(f"{f.name} (pid {f.process.pid})" for f in leftovers)
        say(f"stopping what an earlier `python -m local` left running: {names}…")
        pidfile.reap(leftovers)


def main() -> int:
    args = _arguments()
    load_into_environment()
    azurite_ports: AzuritePorts = args.azurite_ports
    blob, queue, table = azurite_ports.blob, azurite_ports.queue, azurite_ports.table
    level = ["--log-level", "INFO" if args.verbose else "WARNING"]
    ports = {"Azurite blobs": blob, "Azurite queues": queue, "Azurite tables": table}
    ports |= {"the Service Bus broker": args.broker_port, "the Dataverse simulator": args.dataverse_port}
    ports |= {"the F&O simulator": args.fno_port, "the dev host": args.host_port}
    stack = Stack(args.verbose)
    stack.install_signal_handlers()
    try:
        _reap_leftovers()
        problems = check_ports(ports)
        if problems:
            say("cannot start the local stack:\n  " + "\n  ".join(problems), problem=True)
            say("Stop what holds them, or choose other ports (python -m local --help lists the options).", problem=True)
            return 1
        say(f"starting Azurite (tables on 127.0.0.1:{table}, in memory)…")
        stack.start_azurite(azurite_ports).wait_ready()
        say(f"starting the Service Bus broker on 127.0.0.1:{args.broker_port} ({DEFAULT_CONFIG.name})…")
        broker_argv = ["--config", str(DEFAULT_CONFIG), "--port", str(args.broker_port), *level]
        stack.start("servicebus", python_module("local.servicebus", *broker_argv), (args.broker_port,)).wait_ready()
        token = os.environ.get("LOCAL_BEARER_TOKEN") or DEFAULT_TOKEN
        sims = {"dataverse": args.dataverse_port, "fno": args.fno_port}
        for kind, port in sims.items():
            say(f"starting the {kind} simulator on 127.0.0.1:{port} (seeded demo data)…")
            argv = python_module(f"local.sims.{kind}", "--port", str(port), "--seed", *level)
            stack.start(f"{kind} simulator", argv, (port,), env={"LOCAL_BEARER_TOKEN": token}).wait_ready()
        dataverse_url, fno_url = (f"http://127.0.0.1:{p}" for p in sims.values())
        say(f"starting the dev host on 127.0.0.1:{args.host_port}…")
        host_env = {
            "AzureWebJobsStorage": azurite_ports.connection_string(),
            "ServiceBusConnection": emulator_connection(args.broker_port),
            "DATAVERSE_URL": dataverse_url,
            "FNO_URL": fno_url,
            "LOCAL_BEARER_TOKEN": token,
        }
        host_argv = ["--port", str(args.host_port)] + ([] if args.verbose else ["--quiet"])
        stack.host = stack.start("dev host", python_module("local.host", *host_argv), (args.host_port,), host_env)
        stack.host.wait_ready()
        health = f"http://127.0.0.1:{args.host_port}/api/health"
        healthy = _wait_healthy(health)
        host_url = f"http://127.0.0.1:{args.host_port}"
        asyncio.run(connect_apps(host_url, dataverse_url, fno_url, token, function_keys()))
        say("registered the bridge's webhooks with both simulators.")
        if not args.no_demo:
            asyncio.run(run_demo(dataverse_url, fno_url, token))
        say(
            "\nThe local stack is up:\n"
            f"  dev host (Functions)   http://127.0.0.1:{args.host_port}/api/\n"
            f"  health                 {health}  ({'healthy' if healthy else 'NOT healthy yet'})\n"
            f"  Azurite tables         http://127.0.0.1:{table}/devstoreaccount1\n"
            f"  Service Bus (local)    amqp://127.0.0.1:{args.broker_port}  (emulator connection string)\n"
            f"  Dataverse simulator    {dataverse_url}/api/data/v9.2/\n"
            f"  F&O simulator          {fno_url}/data/\n"
            + ("" if args.verbose else "Quiet: one line per applied change and every warning (--verbose for all).\n")
            + "Press Ctrl-C to stop."
        )
        while all(s.process.poll() is None for s in stack.services):
            time.sleep(0.5)
        dead = [s.name for s in stack.services if s.process.poll() is not None]
        say(f"{', '.join(dead)} exited; stopping the rest.")
        return 1
    except StopRequested:
        return 0
    except StartupError as exc:
        say(f"could not start the local stack: {exc}" + ("" if args.verbose else " (--verbose shows more)"), True)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
