"""Start a simulator: tables from the maps, SQLite storage, optional seed fixtures, the aiohttp app.

Both simulators require `Authorization: Bearer <LOCAL_BEARER_TOKEN>` and answer 401 without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import tempfile
import uuid
from pathlib import Path

from aiohttp import web

from local.sims.dataverse import DataverseDialect, registration_seed
from local.sims.engine import Request, SimError, Simulator
from local.sims.fno import FnoDialect
from local.sims.fno_schema import describe
from local.sims.schema import dataverse_tables, fno_tables
from local.sims.store import Store, key_text
from local.sims.virtual_tables import virtual_table
from shared.connectors.wire import dumps
from shared.maps.loader import load_maps

SEED_DIR = Path(__file__).parent / "seed"
DEFAULT_TOKEN = "local-bearer-token"
log = logging.getLogger("sims")


def build(kind: str, db: str = ":memory:", token: str | None = None) -> Simulator:
    maps = load_maps()
    store = Store(db)
    token = token or os.environ.get("LOCAL_BEARER_TOKEN") or DEFAULT_TOKEN
    if kind == "dataverse":
        dataverse = DataverseDialect(store)
        tables = dataverse_tables(maps)
        dataverse.bind(tables)
        # The F&O entities' virtual tables, as one environment's Dataverse knows them (same maps, same F&O schema)
        dataverse.virtual = {e.name: virtual_table(e) for e in describe(fno_tables(maps), maps) if e.virtual_table}
        registration_seed(store, tables)
        return Simulator(dataverse, tables, store, token)
    fno = FnoDialect(store)
    return _FnoSimulator(fno, fno.bind(describe(fno_tables(maps), maps)), store, token)


class _FnoSimulator(Simulator):
    dialect: FnoDialect

    def admin_routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.post("/_admin/data-events")
        async def set_endpoint(request: web.Request) -> web.Response:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("url"), str):
                return web.json_response({"error": "give {url, headers?}"}, status=400)
            self.dialect.endpoint = {"url": body["url"], "headers": body.get("headers") or {}}
            return web.json_response({"data_events": self.dialect.endpoint})

        return routes


def seed(simulator: Simulator, kind: str, path: Path | None = None) -> int:
    """Insert the fixture rows through the engine itself, so lookups resolve and keys are checked as for any
    write. Fixtures list entity sets in dependency order."""
    fixture = json.loads((path or SEED_DIR / f"{kind}.json").read_text())
    count = 0
    with simulator.store.transaction():
        for entity_set, rows in fixture.items():
            for row in rows:
                simulator.execute(
                    Request("POST", entity_set, {"cross-company": "true"}, {}, dumps(row).encode(), "seed"), []
                )
                count += 1
    simulator.writes.clear()  # the counters count what happens after the demo starts
    return count


GENERATED = {"customers": "CustomersV3"}  # what `--generate` knows how to make, per app: F&O customers


def generate(simulator: Simulator, spec: str) -> int:
    """`customers=100000`: that many F&O customers (organizations in usmf, group 10, USD), straight into storage in
    one transaction — a bulk seed for benchmarks, raising no notifications. Accounts `G0000001`…"""
    name, _, count_text = spec.partition("=")
    entity_set = GENERATED.get(name.strip())
    if entity_set is None or entity_set not in simulator.tables or not count_text.strip().isdigit():
        raise SystemExit(f"--generate: give customers=N (F&O simulator); got {spec!r}")
    table = simulator.tables[entity_set]
    rows = []
    for n in range(1, int(count_text) + 1):
        data = {
            "dataAreaId": "usmf", "CustomerAccount": f"G{n:07d}", "OrganizationName": f"Generated customer {n}",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
            "CreditLimit": (n % 100) * 1000, "CreditLimitIsMandatory": "No", "LanguageId": "en-us",
            "PrimaryContactEmail": f"customer{n}@generated.example", "DeliveryAddressCity": "Seattle",
            "DeliveryAddressCountryRegionISOCode": "US",
        }  # fmt: skip
        rows.append((str(uuid.uuid4()), key_text(data, table.key), data))
    with simulator.store.transaction():
        simulator.store.insert_many(entity_set, rows)
    return len(rows)


def tls_context(host: str, ca_file: Path) -> ssl.SSLContext:
    """A certificate for `host` (and localhost) from a local CA made now, with trustme; the CA is written to
    `ca_file` for clients to trust (SSL_CERT_FILE / REQUESTS_CA_BUNDLE / an httpx `verify=`). The real apps serve
    only HTTPS; Microsoft's Dataverse client refuses anything else."""
    import trustme

    ca = trustme.CA(organization_name="sync-bridge local simulators")
    names = list(dict.fromkeys([host, "127.0.0.1", "localhost"]))
    certificate = ca.issue_cert(*names)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(ca_file))
    return context


async def serve(
    kind: str,
    host: str,
    port: int,
    db: str,
    with_seed: bool,
    tls: bool = False,
    ca_file: Path | None = None,
    generated: tuple[str, ...] = (),
) -> None:
    simulator = build(kind, db)
    if with_seed and sum(simulator.store.count(t) for t in simulator.tables) <= 64:
        try:
            log.info("seeded %d rows", seed(simulator, kind))
        except SimError as exc:
            log.error("seed failed: %s", exc.message)
            raise
    for spec in generated:
        log.info("generated %d rows (%s)", generate(simulator, spec), spec)
    admin = simulator.admin_routes() if isinstance(simulator, _FnoSimulator) else None
    runner = web.AppRunner(simulator.app(admin), access_log=None)
    await runner.setup()
    context = None
    if tls:
        ca_file = ca_file or Path(tempfile.gettempdir()) / f"sim-{kind}-{port}-ca.pem"
        context = tls_context(host, ca_file)
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    scheme = "https" if tls else "http"
    print(f"{kind} simulator listening on {scheme}://{host}:{port}{simulator.dialect.root}", flush=True)
    if ca_file is not None and tls:
        print(f"{kind} simulator CA certificate: {ca_file}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await simulator.dialect.deliverer.close()
    await runner.cleanup()


def main(kind: str, default_port: int) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m local.sims.{kind}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--seed", action="store_true", help="load the demo fixtures (local/sims/seed)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a certificate from a local CA made now")
    parser.add_argument("--ca-file", type=Path, help="with --tls: where to write the CA certificate to trust")
    parser.add_argument("--log-level", default="INFO", help="WARNING: only problems (what `python -m local` asks)")
    parser.add_argument("--generate", action="append", default=[], metavar="customers=N",
                        help="bulk-seed N generated rows (F&O: customers), after --seed")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format=f"%(asctime)s {kind}-sim %(levelname)s %(message)s")
    asyncio.run(serve(kind, args.host, args.port, args.db, args.seed, args.tls, args.ca_file, tuple(args.generate)))
