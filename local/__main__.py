"""`python -m local`: starts the whole local stack in the foreground; Ctrl-C or SIGTERM stops every child."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request

from local.processes import AzuritePorts, Service, StartupError, python_module, start, start_azurite
from local.settings_file import load_into_environment

HOST_PORT = int(os.environ.get("DEV_HOST_PORT", "7071"))


def _wait_healthy(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def main() -> int:
    load_into_environment()
    services: list[Service] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping the local stack…", flush=True)
        for service in reversed(services):
            service.stop()
        print("stopped.", flush=True)

    def on_sigterm(*_: object) -> None:
        stop_all()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print("starting Azurite (tables on 127.0.0.1:10002, in memory)…", flush=True)
        services.append(start_azurite(AzuritePorts()))
        print(f"starting the dev host on 127.0.0.1:{HOST_PORT}…", flush=True)
        host = start("dev host", python_module("local.host", "--port", str(HOST_PORT)), (HOST_PORT,))
        services.append(host)
        host.wait_ready()
        health = f"http://127.0.0.1:{HOST_PORT}/api/health"
        healthy = _wait_healthy(health)
        print(
            "\nThe local stack is up:\n"
            f"  dev host (Functions)   http://127.0.0.1:{HOST_PORT}/api/\n"
            f"  health                 {health}  ({'healthy' if healthy else 'NOT healthy yet'})\n"
            "  Azurite tables         http://127.0.0.1:10002/devstoreaccount1\n"
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
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
