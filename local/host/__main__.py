"""`python -m local.host [--app function_app:app] [--host 127.0.0.1] [--port 7071]`"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from local.settings_file import ROOT, LocalSettingsError, load_into_environment

log = logging.getLogger("local.host")


async def serve(app_target: str, host: str, port: int, root: Path) -> None:
    # Imports after the settings are in the environment, as the worker imports the app after the host sets them.
    from local.host.config import DevHostSettings, read_host_json, route_prefix
    from local.host.functions import catalog, load_app
    from local.host.http import HttpTriggerServer
    from local.host.keys import parse_function_keys
    from local.host.servicebus import ServiceBusOptions, ServiceBusTriggerRunner

    keys = parse_function_keys(DevHostSettings().function_keys)
    host_json = read_host_json(root)
    functions = catalog(load_app(app_target))
    http = HttpTriggerServer(functions.http, keys, route_prefix(host_json))
    runner = web.AppRunner(http.web_app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    for name, route in http.routes():
        log.info("http  %-24s http://%s:%d%s", name, host, port, route)
    triggers = ServiceBusTriggerRunner(functions.service_bus, ServiceBusOptions.from_host_json(host_json))
    triggers.start()
    from local.host.timers import TimerRunner, timer_specs

    timers = TimerRunner(timer_specs(functions.timers))
    timers.start()
    for name in functions.unsupported:
        log.warning("not served by the dev host: %s", name)
    log.info("dev host ready on http://%s:%d", host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("dev host stopping")
    await timers.stop()
    await triggers.stop()
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default=os.environ.get("DEV_HOST_ADDRESS", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEV_HOST_PORT", "7071")))
    parser.add_argument("--root", type=Path, default=ROOT, help="folder with host.json and local.settings.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO
    logging.getLogger("azure.servicebus._pyamqp").setLevel(logging.ERROR)  # link-level chatter on refused attaches
    try:
        path = load_into_environment(args.root)
        log.info("settings from %s", path.name)
        sys.path.insert(0, str(args.root))
        asyncio.run(serve(args.app, args.host, args.port, args.root))
    except (LocalSettingsError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
