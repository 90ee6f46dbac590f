"""Transform throughput for the customers map (>= 30 fields), one core, each direction. Target: >= 50,000 rows/s.

Run: `make bench` or `.venv/bin/python bench/transform.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import JsonValue

from shared.maps.loader import load_maps
from shared.maps.model import Direction, Side, TypeConversion
from shared.maps.transform import CompiledMap, ReferenceResolver, transform

TARGET = 50_000


class KnownRows:
    """What the ledger would answer for the Dataverse rows' lookups (company, customer group, currency)."""

    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        if map_name == "customer_groups":
            return {"dataAreaId": "usmf", "CustomerGroupId": "10"}
        return {"CurrencyCode": "USD"}

    def company_code(self, dataverse_company_id: str) -> str | None:
        return "usmf"


def customer(i: int, fields: list[str]) -> dict[str, JsonValue]:
    record: dict[str, JsonValue] = {name: f"value {i} {name}" for name in fields}
    record.update(
        {
            "dataAreaId": "usmf",
            "CustomerAccount": f"US-{i:06d}",
            "CustomerGroupId": "10",
            "SalesCurrencyCode": "USD",
            "CreditLimit": {"$type": "decimal", "value": f"{i}.50"},
            "CreditLimitIsMandatory": "Yes" if i % 2 else "No",
            "IsOneTimeCustomer": "No",
            "PartyType": "Organization",
            "OrganizationNumberOfEmployees": i,
        }
    )
    return record


def rate(
    compiled: CompiledMap,
    source: Side,
    rows: list[dict[str, JsonValue]],
    maps: dict[str, CompiledMap],
    n: int,
    resolver: ReferenceResolver | None = None,
) -> float:
    for row in rows:  # warm up
        transform(compiled, source, row, maps, resolver)
    count = len(rows)
    started = time.process_time()
    for i in range(n):
        transform(compiled, source, rows[i % count], maps, resolver)
    return n / (time.process_time() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    maps = load_maps()
    compiled = maps.maps["customers"]
    m = compiled.map
    fields = [f.fno for f in m.fields if f.fno and m.direction_of(f) is not Direction.TO_FNO and f.type is None]
    # 1,000 distinct rows, cycled: apply transforms one change at a time with a small heap, and holding every
    # input row alive would mostly measure the garbage collector walking the benchmark's own fixture.
    fno_rows = [customer(i, fields) for i in range(1000)]
    # The same customers as Dataverse rows: what the F&O rows become, with the lookups as Dataverse returns them.
    dataverse_rows: list[dict[str, JsonValue]] = []
    for i, fno_row in enumerate(fno_rows):
        row = transform(compiled, Side.FNO, fno_row, maps.maps)
        record: dict[str, JsonValue] = {**row.key, **row.values}
        for column in row.lookups:
            record[column] = {"$type": "lookup", "table": column, "id": f"00000000-0000-0000-0000-{i:012d}"}
        dataverse_rows.append(record)
    mapped = sum(1 for f in m.fields if f.fno and f.dataverse)
    conversions = sum(1 for f in m.fields if f.type is not TypeConversion.TEXT and f.type is not None)
    print(
        f"customers map: {len(m.fields)} fields ({mapped} mapped both sides, {conversions} typed), {args.rows:,} rows"
    )
    for label, source, rows, resolver in (
        ("F&O -> Dataverse", Side.FNO, fno_rows, None),
        ("Dataverse -> F&O", Side.DATAVERSE, dataverse_rows, KnownRows()),
    ):
        figure = rate(compiled, source, rows, maps.maps, args.rows, resolver)
        verdict = "OK" if figure >= TARGET else "BELOW"
        print(f"transform {label}: {figure:10,.0f} rows/s per core (CPU time)  target {TARGET:,}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
