"""`python -m shared.registration`: point Dataverse (and tell you how to point F&O) at the bridge.

  dataverse --webhook-url URL --key KEY [--dry-run]   create or update the webhook endpoint, steps and images
  remove [--name NAME]                                undo it
  fno --webhook-url URL                                print the data and business events to activate in F&O

Dataverse is reached with DATAVERSE_URL and azure-identity (or LOCAL_BEARER_TOKEN for the simulator).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.connectors.errors import ConnectorError
from shared.connectors.wiring import dataverse_client
from shared.maps.loader import MapProblems, load_maps
from shared.registration.dataverse import RegistrationError, register, remove
from shared.registration.plan import ENDPOINT_NAME, dataverse_plan, fno_plan
from shared.settings import ConfigurationError, get_settings


async def _run(args: argparse.Namespace) -> int:
    maps = load_maps()
    if args.command == "fno":
        print(fno_plan(maps, args.webhook_url))
        return 0
    if args.command == "dataverse" and args.dry_run:
        print(dataverse_plan(maps, args.webhook_url, args.name).describe())
        return 0
    client = dataverse_client(get_settings())
    try:
        if args.command == "dataverse":
            lines = await register(client, dataverse_plan(maps, args.webhook_url, args.name), args.key)
        else:
            lines = await remove(client, args.name)
    finally:
        await client.close()
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.registration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    dataverse = commands.add_parser("dataverse", help="register the webhook in Dataverse")
    dataverse.add_argument(
        "--webhook-url", required=True, help="https://<app>.azurewebsites.net/api/webhooks/dataverse"
    )
    dataverse.add_argument("--key", default="", help="the function key of dataverse_webhook (sent as ?code=)")
    dataverse.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    dataverse.add_argument("--name", default=ENDPOINT_NAME)
    removal = commands.add_parser("remove", help="remove what `dataverse` registered")
    removal.add_argument("--name", default=ENDPOINT_NAME)
    fno = commands.add_parser("fno", help="print what to activate in F&O")
    fno.add_argument("--webhook-url", required=True, help="https://<app>.azurewebsites.net/api/webhooks/fno?code=…")
    args = parser.parse_args(argv)
    if args.command == "dataverse" and not args.dry_run and not args.key:
        parser.error("--key is required (the dataverse_webhook function key)")
    try:
        return asyncio.run(_run(args))
    except (ConfigurationError, MapProblems, RegistrationError, ConnectorError) as exc:
        print(f"registration failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
