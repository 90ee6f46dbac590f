"""`python -m shared.maps validate [FILES…]` | `show NAME` | `schema [--check]` | `check --live [--json]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import yaml

from shared.maps.loader import MAPS_DIR, MapProblems, MapSet, load_maps
from shared.maps.model import TableMap

SCHEMA = MAPS_DIR.parent / "schema.json"


def schema_text() -> str:
    schema = TableMap.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Table map (F&O data entity ↔ Dataverse table)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.maps")
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check maps; exit 1 with every problem")
    validate.add_argument("files", nargs="*", type=Path)
    show = sub.add_parser("show", help="the resolved map, and the dependency order of all maps")
    show.add_argument("name")
    schema = sub.add_parser("schema", help="write maps/schema.json from the models")
    schema.add_argument("--check", action="store_true", help="exit 1 if maps/schema.json is out of date")
    check = sub.add_parser("check", help="check the maps against both apps' live metadata; exit 1 with every problem")
    check.add_argument(
        "--live",
        action="store_true",
        required=True,
        help="read F&O $metadata and Dataverse EntityDefinitions with the bridge's settings",
    )
    check.add_argument("--json", action="store_true", help="the report as JSON")
    args = parser.parse_args(argv)

    if args.command == "schema":
        text = schema_text()
        if args.check:
            current = SCHEMA.read_text(encoding="utf-8") if SCHEMA.exists() else ""
            if current != text:
                print("maps/schema.json is out of date: run `python -m shared.maps schema`", file=sys.stderr)
                return 1
            return 0
        SCHEMA.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA}")
        return 0
    try:
        maps = load_maps(args.files or None) if args.command == "validate" else load_maps()
    except MapProblems as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.command == "check":
        return asyncio.run(_check_live(maps, args.json))
    if args.command == "validate":
        print(f"{len(maps.maps)} map(s) valid; dependency order: {', '.join(maps.order)}")
        return 0
    compiled = maps.maps.get(args.name)
    if compiled is None:
        print(f"no map named {args.name!r} (maps: {', '.join(sorted(maps.maps))})", file=sys.stderr)
        return 1
    resolved = compiled.map.model_dump(mode="json", exclude_none=True)
    for f in resolved["fields"]:
        f.setdefault("dir", compiled.map.dir.value)
    print(yaml.safe_dump({"map": resolved, "dependency_order": maps.order}, sort_keys=False, allow_unicode=True))
    return 0


async def _check_live(maps: MapSet, as_json: bool) -> int:
    """With the bridge's own settings and credentials (DATAVERSE_URL, FNO_URL, tokens as the connectors get them)."""
    from shared.connectors.wiring import Connectors
    from shared.maps.metadata import MetadataUnavailable, check_live
    from shared.settings import ConfigurationError, get_settings

    connectors = Connectors(get_settings())
    try:
        report = await check_live(maps, connectors.dataverse, connectors.fno)
    except (MetadataUnavailable, ConfigurationError) as exc:
        print(f"cannot check the maps: {exc}", file=sys.stderr)
        return 2
    finally:
        await connectors.close()
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    elif report.ok:
        print(f"{len(report.maps)} map(s) match both apps' metadata")
    else:
        failing = report.failing()
        print(f"{len(report.problems)} problem(s) in {len(failing)} of {len(report.maps)} map(s):")
        for problem in report.problems:
            print(f"  {problem}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
