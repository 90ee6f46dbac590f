"""Loading validates everything and reports every problem at once, with file, map and field."""

from pathlib import Path

import pytest

from shared.maps.__main__ import main, schema_text
from shared.maps.loader import MAPS_DIR, MapProblems, load_maps
from shared.maps.model import Side


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD = """
name: broken
fno: {entity: Things, key: [dataAreaId, ThingId, Other]}
dataverse: {table: thing, entity_set: things, key: [msdyn_company, thingid]}
company: {}
depends_on: [nowhere, broken]
filters: {fno: "Status == 'Open' and Mystery > 1", dataverse: "concat(a,"}
fields:
  - {fno: ThingId, dataverse: thingid, dir: to_dataverse}
  - {fno: Kind, dataverse: kindcode, value_map: {A: 1, B: 1}}
  - {fno: Group, dataverse: groupid, lookup: groups}
  - {fno: Amount, dataverse: amount, type: decimal}
  - {fno: Status, dataverse: statuscode, type: enum_choice, value_map: {Open: x}}
  - {dataverse: label, to_dataverse: "upper(Unknown)"}
  - {fno: Sideways, dataverse: sideways, dir: sideways}
  - {}
"""


def test_every_problem_is_reported_at_once_with_where_it_is(tmp_path: Path) -> None:
    with pytest.raises(MapProblems) as info:
        load_maps([write(tmp_path, "broken.yaml", BAD)])
    text = str(info.value)
    # pydantic-level problems come first and stop the map from compiling further
    assert "broken.yaml:broken:fields[6] Sideways↔sideways: dir" in text
    assert "fields[7] ∅↔∅" in text


def test_semantic_problems_are_all_found(tmp_path: Path) -> None:
    fixed = BAD.replace("  - {fno: Sideways, dataverse: sideways, dir: sideways}\n  - {}\n", "")
    with pytest.raises(MapProblems) as info:
        load_maps([write(tmp_path, "broken.yaml", fixed)])
    messages = [str(p) for p in info.value.problems]
    expected = [
        "broken.yaml:broken:fno.key: key field Other is not mapped",
        "broken.yaml:broken:ThingId ↔ thingid: key field ThingId must be two-way on a two-way map",
        "broken.yaml:broken:Kind ↔ kindcode: value_map is not invertible: 1 come(s) from several values",
        "broken.yaml:broken:Group ↔ groupid: lookup to unknown map 'groups'",
        "broken.yaml:broken:Amount ↔ amount: type decimal needs a scale (decimal places)",
        "broken.yaml:broken:Status ↔ statuscode: enum_choice value_map values must be whole numbers (choice values)",
        "broken.yaml:broken:depends_on: unknown map 'nowhere'",
        "broken.yaml:broken:depends_on: a map cannot depend on itself",
        "broken.yaml:broken:∅ ↔ label: to_dataverse uses unknown field(s): Unknown",
        "broken.yaml:broken:filters.fno: the F&O filter uses unknown field(s): Mystery",
    ]
    for line in expected:
        assert line in messages, (line, messages)
    assert any("filters.dataverse: the Dataverse filter does not parse" in m for m in messages)


def test_dependency_cycles_and_duplicate_names(tmp_path: Path) -> None:
    a = (
        "name: a\ndepends_on: [b]\nfno: {entity: A, key: [Id]}\n"
        "dataverse: {table: a, entity_set: as, key: [id]}\nfields: [{fno: Id, dataverse: id}]\n"
    )
    b = a.replace("name: a", "name: b").replace("[b]", "[a]")
    with pytest.raises(MapProblems) as info:
        load_maps([write(tmp_path, "a.yaml", a), write(tmp_path, "b.yaml", b), write(tmp_path, "c.yaml", a)])
    text = str(info.value)
    assert "dependency cycle" in text
    assert "c.yaml:a: the name is used by a.yaml too" in text


def test_the_shipped_maps_are_valid_and_ordered_by_dependency() -> None:
    maps = load_maps()
    order = maps.order
    assert order.index("companies") < order.index("customer_groups") < order.index("customers")
    assert order.index("customers") < order.index("sales_orders") < order.index("sales_order_lines")
    assert {"hierarchy_types", "hierarchy_purposes", "hierarchies", "internal_organizations_operating_units",
            "internal_organizations_legal_entities", "companies", "customer_groups", "customers", "vendor_groups",
            "vendors", "released_products", "currencies", "sales_orders", "sales_order_lines",
            "inventory_on_hand"} <= set(maps.maps)  # fmt: skip
    assert len(maps.maps["customers"].map.fields) >= 30


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    assert "valid; dependency order: companies" in capsys.readouterr().out
    assert main(["validate", str(write(tmp_path, "broken.yaml", BAD))]) == 1
    assert "problem(s) in the table maps" in capsys.readouterr().err
    assert main(["show", "customers"]) == 0
    shown = capsys.readouterr().out
    assert "name: customers" in shown and "dependency_order:" in shown and "dir: both" in shown
    assert main(["show", "nope"]) == 1


def test_the_json_schema_is_generated_from_the_models_and_up_to_date() -> None:
    assert (MAPS_DIR.parent / "schema.json").read_text() == schema_text(), "run: python -m shared.maps schema"
    assert main(["schema", "--check"]) == 0


def test_maps_reading_an_entity_are_found_by_either_name_and_kept() -> None:
    maps = load_maps()
    readers = maps.reading(Side.FNO, "CustomersV3")
    assert [c.map.name for c in readers] == ["customers"]
    assert [c.map.name for c in maps.reading(Side.DATAVERSE, "account")] == ["customers"]
    assert maps.reading(Side.FNO, "CustomersV3") is readers  # worked out once: every change asks, twice
    assert maps.reading(Side.FNO, "NoSuchEntity") == ()
