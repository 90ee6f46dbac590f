"""`python -m local`: starts the whole local stack in the foreground; Ctrl-C or SIGTERM stops every child.

Default ports are the well-known ones (Azurite 10000-10002, Service Bus 5672, dev host 7071); the options move
them, e.g. for tests, and point the dev host at whatever was started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.request

from local.connect import connect_apps
from local.demo import run_demo
from local.processes import (
    AzuritePorts,
    Service,
    StartupError,
    emulator_connection,
    python_module,
    start,
    start_azurite,
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


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("--host-port", type=int, default=7071)
    parser.add_argument("--broker-port", type=int, default=5672)
    parser.add_argument("--azurite-ports", default="10000,10001,10002", help="blob,queue,table")
    parser.add_argument("--dataverse-port", type=int, default=7301)
    parser.add_argument("--fno-port", type=int, default=7302)
    parser.add_argument("--no-demo", action="store_true", help="start the stack without running the demo")
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    load_into_environment()
    blob, queue, table = (int(p) for p in args.azurite_ports.split(","))
    azurite_ports = AzuritePorts(blob, queue, table)
    services: list[Service] = []
    stopping = False

    def stop_all() -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping the local stack…", flush=True)
        for service in reversed(services):
            service.stop()
        print("stopped.", flush=True)

    def on_signal(*_: object) -> None:
        stop_all()
        sys.exit(0)

    # Explicit handlers: a stack started in the background inherits SIGINT ignored, and Ctrl-C must still work.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(f"starting Azurite (tables on 127.0.0.1:{table}, in memory)…", flush=True)
        services.append(start_azurite(azurite_ports))
        print(f"starting the Service Bus broker on 127.0.0.1:{args.broker_port} ({DEFAULT_CONFIG.name})…", flush=True)
        broker = start(
            "servicebus",
            python_module("local.servicebus", "--config", str(DEFAULT_CONFIG), "--port", str(args.broker_port)),
            (args.broker_port,),
        )
        services.append(broker)
        broker.wait_ready()
        token = os.environ.get("LOCAL_BEARER_TOKEN") or DEFAULT_TOKEN
        sims = {"dataverse": args.dataverse_port, "fno": args.fno_port}
        for kind, port in sims.items():
            print(f"starting the {kind} simulator on 127.0.0.1:{port} (seeded demo data)…", flush=True)
            sim = start(
                f"{kind} simulator",
                python_module(f"local.sims.{kind}", "--port", str(port), "--seed"),
                (port,),
                env={"LOCAL_BEARER_TOKEN": token},
            )
            services.append(sim)
            sim.wait_ready()
        dataverse_url, fno_url = (f"http://127.0.0.1:{p}" for p in sims.values())
        print(f"starting the dev host on 127.0.0.1:{args.host_port}…", flush=True)
        host_env = {
            "AzureWebJobsStorage": azurite_ports.connection_string(),
            "ServiceBusConnection": emulator_connection(args.broker_port),
            "DATAVERSE_URL": dataverse_url,
            "FNO_URL": fno_url,
            "LOCAL_BEARER_TOKEN": token,
        }
        host = start(
            "dev host", python_module("local.host", "--port", str(args.host_port)), (args.host_port,), env=host_env
        )
        services.append(host)
        host.wait_ready()
        health = f"http://127.0.0.1:{args.host_port}/api/health"
        healthy = _wait_healthy(health)
        host_url = f"http://127.0.0.1:{args.host_port}"
        asyncio.run(connect_apps(host_url, dataverse_url, fno_url, token, function_keys()))
        print("registered the bridge's webhooks with both simulators.", flush=True)
        if not args.no_demo:
            asyncio.run(run_demo(dataverse_url, fno_url, token))
        print(
            "\nThe local stack is up:\n"
            f"  dev host (Functions)   http://127.0.0.1:{args.host_port}/api/\n"
            f"  health                 {health}  ({'healthy' if healthy else 'NOT healthy yet'})\n"
            f"  Azurite tables         http://127.0.0.1:{table}/devstoreaccount1\n"
            f"  Service Bus (local)    amqp://127.0.0.1:{args.broker_port}  (emulator connection string)\n"
            f"  Dataverse simulator    {dataverse_url}/api/data/v9.2/\n"
            f"  F&O simulator          {fno_url}/data/\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while all(s.process.poll() is None for s in services):
            time.sleep(0.5)
        dead = [s.name for s in services if s.process.poll() is not None]
        print(f"{', '.join(dead)} exited; stopping the rest.", flush=True)
        return 1
    except StartupError as exc:
        print(f"could not start the local stack: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
