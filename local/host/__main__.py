"""`python -m local.host [--app function_app:app] [--host 127.0.0.1] [--port 7071] [--quiet]`

On SIGTERM, SIGINT or SIGHUP it stops receiving, lets in-flight HTTP requests finish (a few seconds at most), then
awaits the app's shutdown hook: an async function named `shutdown` next to the FunctionApp (`function_app.shutdown`),
where the app closes the clients it opened. The Functions host has no such hook (its worker just ends); the dev host
calls it so that a stop closes every connection instead of leaving them to the garbage collector.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from local.host.logs import configure as configure_logging
from local.settings_file import ROOT, LocalSettingsError, load_into_environment

log = logging.getLogger("local.host")
SHUTDOWN_SECONDS = 3.0  # at most, for each step of the stop (`python -m local` gives us 3 s alone, 6 s in all)


async def serve(app_target: str, host: str, port: int, root: Path) -> None:
    # Imports after the settings are in the environment, as the worker imports the app after the host sets them.
    from local.host.config import DevHostSettings, read_host_json, route_prefix
    from local.host.functions import catalog, load_app, shutdown_hook
    from local.host.http import HttpTriggerServer
    from local.host.keys import parse_function_keys
    from local.host.servicebus import ServiceBusOptions, ServiceBusTriggerRunner

    keys = parse_function_keys(DevHostSettings().function_keys)
    host_json = read_host_json(root)
    functions = catalog(load_app(app_target))
    app_shutdown = shutdown_hook(app_target)
    http = HttpTriggerServer(functions.http, keys, route_prefix(host_json))
    runner = web.AppRunner(http.web_app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS)
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
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("dev host stopping")
    await timers.stop()
    try:
        await asyncio.wait_for(triggers.stop(), SHUTDOWN_SECONDS)
    except TimeoutError:
        log.warning("the Service Bus receivers did not close within %g s", SHUTDOWN_SECONDS)
    await runner.cleanup()
    if app_shutdown is not None:
        try:
            await asyncio.wait_for(app_shutdown(), SHUTDOWN_SECONDS)
        except Exception as exc:  # a failing hook must not keep the host from stopping
            log.warning("the app's shutdown hook failed: %r", exc)
    log.info("dev host stopped")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default=os.environ.get("DEV_HOST_ADDRESS", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEV_HOST_PORT", "7071")))
    parser.add_argument("--root", type=Path, default=ROOT, help="folder with host.json and local.settings.json")
    parser.add_argument(
        "--quiet", action="store_true", help="only warnings, errors and one short line per applied change"
    )
    args = parser.parse_args()
    configure_logging(quiet=args.quiet)
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
