"""Transform throughput for the customers map (>= 30 fields), one core. Target: >= 50,000 rows/s per core.

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
from shared.maps.transform import transform


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
    distinct = [customer(i, fields) for i in range(1000)]
    mapped = sum(1 for f in m.fields if f.fno and f.dataverse)
    for row in distinct:  # warm up
        transform(compiled, Side.FNO, row, maps.maps)
    started = time.process_time()
    for i in range(args.rows):
        transform(compiled, Side.FNO, distinct[i % 1000], maps.maps)
    elapsed = time.process_time() - started
    rate = args.rows / elapsed
    verdict = "OK" if rate >= 50_000 else "BELOW"
    conversions = sum(1 for f in m.fields if f.type is not TypeConversion.TEXT and f.type is not None)
    print(
        f"customers map: {len(m.fields)} fields ({mapped} mapped both sides, {conversions} typed), {args.rows:,} rows"
    )
    print(f"transform F&O -> Dataverse: {rate:10,.0f} rows/s per core (CPU time)  target 50,000  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
