"""The decisions of a sync run, without I/O: rows of both sides + the ledger + the customers map → a plan."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.initialsync.plan import Kind, Lookups, Snapshot, dataverse_row_id, plan_map
from shared.ledger.model import LedgerEntry, key_text
from shared.maps.loader import load_maps
from shared.maps.model import Side
from shared.maps.transform import transform

MAPS = load_maps()
CUSTOMERS = MAPS.maps["customers"]
COMPANY = "00000000-0000-0000-0000-0000000000c1"
GROUP_10 = "00000000-0000-0000-0000-000000000010"
USD = "00000000-0000-0000-0000-0000000000d1"
LOOKUPS = Lookups(
    companies={COMPANY: "USMF"},
    fno_keys={("customer_groups", GROUP_10): {"dataAreaId": "usmf", "CustomerGroupId": "10"},
              ("currencies", USD): {"CurrencyCode": "USD"}},
)  # fmt: skip


def lookup(row_id: str) -> dict[str, Any]:
    return {"$type": "lookup", "id": row_id}


def fno_row(number: str, **values: Any) -> Snapshot:
    record = {"dataAreaId": "usmf", "CustomerAccount": number, "OrganizationName": "Contoso", "PartyType":
              "Organization", "CustomerGroupId": "10", "LanguageId": "en-us"} | values  # fmt: skip
    return Snapshot(record, 'W/"JzEsMTAwMCc="')


def dataverse_row(number: str, row_id: str = "11111111-0000-0000-0000-000000000001", **values: Any) -> Snapshot:
    record = {"msdyn_company": lookup(COMPANY), "accountnumber": number, "name": "Contoso", "customertypecode": 3,
              "address1_addresstypecode": 2, "msdyn_customergroupid": lookup(GROUP_10)} | values  # fmt: skip
    return Snapshot(record, 'W/"500"', row_id)


def plan(fno: list[Snapshot], dataverse: list[Snapshot], ledger: dict[str, LedgerEntry] | None = None,
         lookups: Lookups = LOOKUPS) -> list[Any]:  # fmt: skip
    ledger = ledger or {}
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    return plan_map(CUSTOMERS, MAPS.maps, fno, dataverse, ledger, index, lookups)  # type: ignore[arg-type]


def test_a_row_only_in_fno_is_created_in_dataverse_with_an_id_from_its_key() -> None:
    [d] = plan([fno_row("C1", OrganizationName="  Fabrikam ")], [])
    assert d.kind is Kind.CREATED and d.key == {"dataAreaId": "usmf", "CustomerAccount": "C1"}
    [w] = d.writes
    assert w.into is Side.DATAVERSE and w.create and w.row_id == dataverse_row_id("customers", d.key)
    assert w.values["name"] == "Fabrikam" and w.values["accountnumber"] == "C1" and "msdyn_company" not in w.values
    assert w.lookups["msdyn_customergroupid"] is not None and w.lookups["msdyn_company"] is not None
    assert (
        d.entry is not None and d.entry.dataverse.row_id == w.row_id and d.entry.dataverse.values["name"] == "Fabrikam"
    )
    assert d.entry.fno.values["OrganizationName"] == "  Fabrikam "  # what F&O holds: its echo is recognised


def test_the_id_a_run_gives_a_row_is_uuid5_of_its_map_and_key() -> None:
    """The id must not change from one version to the next: a create repeated after an upgrade (a run resumed) has to
    name the row the first attempt made, or Dataverse would get a duplicate."""
    key = {"dataAreaId": "usmf", "CustomerAccount": "C/1 ü'"}
    namespace = uuid.UUID("6f1d8a52-4c3e-4b7a-9f0e-2d5c1b8a7e40")
    assert dataverse_row_id("customers", key) == str(uuid.uuid5(namespace, f"customers:{key_text(key)}"))


def test_a_row_only_in_dataverse_is_created_in_fno_with_its_group_key() -> None:
    [d] = plan([], [dataverse_row("D1", name="Adatum")])
    assert d.kind is Kind.CREATED
    [w] = d.writes
    assert w.into is Side.FNO and w.create and w.key == {"dataAreaId": "usmf", "CustomerAccount": "D1"}
    assert w.values["OrganizationName"] == "Adatum" and w.values["CustomerGroupId"] == "10"


def test_equal_rows_are_linked_then_unchanged() -> None:
    [d] = plan([fno_row("E1")], [dataverse_row("E1")])
    assert d.kind is Kind.LINKED and not d.writes and d.entry is not None
    ledger = {d.key_text: d.entry}
    [again] = plan([fno_row("E1")], [dataverse_row("E1")], ledger)
    assert again.kind is Kind.UNCHANGED and again.entry is None and not again.writes


def test_different_rows_follow_the_initial_sync_master_and_record_the_conflict() -> None:
    [d] = plan([fno_row("X1", OrganizationName="From F&O")], [dataverse_row("X1", name="From Dataverse")])
    assert d.kind is Kind.CONFLICT and CUSTOMERS.map.initial_sync_master is Side.FNO
    [w] = d.writes
    assert w.into is Side.DATAVERSE and w.values == {"name": "From F&O"} and w.if_match == 'W/"500"'
    assert d.conflict is not None and d.conflict.winner == "fno"
    assert d.conflict.fields["name"]["dataverse"] == "From Dataverse"  # the loser's value, kept


def test_with_a_ledger_the_side_that_did_not_change_is_behind() -> None:
    [linked] = plan([fno_row("R1")], [dataverse_row("R1")])
    ledger = {linked.key_text: linked.entry}
    [d] = plan([fno_row("R1")], [dataverse_row("R1", name="Renamed in Dataverse")], ledger)  # type: ignore[dict-item]
    assert d.kind is Kind.UPDATED and d.conflict is None and d.behind == [Side.FNO]
    assert d.writes[0].values == {"OrganizationName": "Renamed in Dataverse"}


def test_a_reference_the_ledger_does_not_know_is_an_error_not_a_guess() -> None:
    [d] = plan([], [dataverse_row("G1", msdyn_customergroupid=lookup("99999999-0000-0000-0000-000000000099"))])
    assert d.kind is Kind.ERROR and "customer_groups" in (d.error or "") and d.error_side is Side.DATAVERSE


def test_a_snapshot_older_than_the_ledger_is_left_to_live_sync() -> None:
    entry = LedgerEntry(map="customers", key={"dataAreaId": "usmf", "CustomerAccount": "S1"})
    entry.dataverse.version, entry.dataverse.row_id = "900", "11111111-0000-0000-0000-000000000001"
    [d] = plan([fno_row("S1")], [dataverse_row("S1", name="old")], {key_text(entry.key): entry})
    assert d.kind is Kind.SKIPPED and not d.writes


def test_an_f_and_o_row_live_sync_recorded_after_the_read_began_is_left_to_live_sync() -> None:
    """F&O ETags tell no order (RecVersion is random: tests/unit/connectors/test_fno_etags.py). An entry live sync
    saved after the run began reading F&O may hold a newer state than the run read: the run leaves the row alone.
    One saved before the read is older than what the run read: a different token there is drift, and is repaired."""
    from datetime import UTC, datetime, timedelta

    read_at = datetime.now(UTC)
    entry = LedgerEntry(map="customers", key={"dataAreaId": "usmf", "CustomerAccount": "S2"})
    entry.fno.version, entry.fno.values = "1954221457,5637144578", {"OrganizationName": "Newer"}
    entry.dataverse.version, entry.dataverse.row_id = "500", "11111111-0000-0000-0000-000000000001"
    entry.updated_at = read_at + timedelta(seconds=1)
    read = Snapshot(fno_row("S2", OrganizationName="Older").record, 'W/"JzEsMTAwMCc="', read_at=read_at)
    [d] = plan([read], [dataverse_row("S2", name="Newer")], {key_text(entry.key): entry})
    assert d.kind is Kind.SKIPPED and not d.writes

    entry.updated_at = read_at - timedelta(seconds=1)  # recorded before the read: the run's copy is the newer
    [d] = plan([read], [dataverse_row("S2", name="Newer")], {key_text(entry.key): entry})
    assert d.kind is not Kind.SKIPPED and [w.values.get("name") for w in d.writes] == ["Older"]


def test_rows_outside_the_filters_are_out_of_scope() -> None:
    assert plan([fno_row("P1", PartyType="Person")], [dataverse_row("P2", customertypecode=1)]) == []


texts = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    name=texts, city=texts, limit=st.integers(min_value=0, max_value=10**7), mandatory=st.sampled_from(["Yes", "No"])
)
def test_a_dataverse_row_made_from_an_fno_row_by_the_map_is_equal_under_it(
    name: str, city: str, limit: int, mandatory: str
) -> None:
    fno = fno_row("H1", OrganizationName=name.strip() or "x", DeliveryAddressCity=city, CreditLimit=limit,
                  CreditLimitIsMandatory=mandatory)  # fmt: skip
    row = transform(CUSTOMERS, Side.FNO, fno.record, MAPS.maps)
    record: dict[str, Any] = dict(row.values) | {"accountnumber": "H1", "msdyn_company": lookup(COMPANY),
                                                 "msdyn_customergroupid": lookup(GROUP_10)}  # fmt: skip
    [d] = plan([fno], [Snapshot(record, 'W/"1"', "22222222-0000-0000-0000-000000000002")])
    assert d.kind is Kind.LINKED and not d.writes


# A value set on one side in a column that was empty at the last sync (review finding 3): drift to carry over — not
# missed (a two-way column the F&O row does not carry was skipped), not a conflict (a column the ledger entry does
# not hold — empty then — read as "cannot tell", so both sides looked changed).


def test_a_value_only_dataverse_holds_is_a_difference_not_equal() -> None:
    [d] = plan([fno_row("E2")], [dataverse_row("E2", emailaddress1="a@b.example")])
    assert d.kind is Kind.CONFLICT and d.conflict is not None and "emailaddress1" in d.conflict.fields
    [w] = d.writes  # no ledger: the initial-sync master (F&O) wins, and F&O holds no e-mail
    assert w.into is Side.DATAVERSE and w.values == {"emailaddress1": None}


def test_a_value_set_in_dataverse_after_the_sync_flows_to_fno() -> None:
    [first] = plan([fno_row("E3")], [dataverse_row("E3")])
    ledger = {first.key_text: first.entry}
    # A person sets the e-mail in Dataverse; the notification is lost.
    [d] = plan([fno_row("E3")], [dataverse_row("E3", emailaddress1="new@b.example")], ledger)  # type: ignore[arg-type]
    assert d.kind is Kind.UPDATED and d.behind == [Side.FNO], d
    [w] = d.writes
    assert w.into is Side.FNO and w.values == {"PrimaryContactEmail": "new@b.example"}
    assert d.entry is not None and d.entry.fno.values["PrimaryContactEmail"] == "new@b.example"


def test_a_value_set_in_fno_after_the_sync_is_an_update_not_a_conflict() -> None:
    [first] = plan([fno_row("E4")], [dataverse_row("E4", telephone1=None)])
    ledger = {first.key_text: first.entry}
    phoned = fno_row("E4", PrimaryContactPhone="555-0100")
    [d] = plan([phoned], [dataverse_row("E4", telephone1=None)], ledger)  # type: ignore[arg-type]
    assert d.kind is Kind.UPDATED and d.conflict is None, d
    assert [(w.into, w.values) for w in d.writes] == [(Side.DATAVERSE, {"telephone1": "555-0100"})]


def test_an_empty_text_and_no_value_are_equal() -> None:
    [d] = plan([fno_row("E6", PrimaryContactPhone="")], [dataverse_row("E6", telephone1=None)])
    assert d.kind is Kind.LINKED and not d.writes, d


def test_a_run_records_values_as_live_sync_compares_them_so_an_edit_of_an_empty_field_flows() -> None:
    """F&O answers an empty text as "": a run recorded it raw while live sync compares `normalize`d values (None),
    so a person's later Dataverse edit of that field looked like a change on both sides — a conflict F&O won, and
    the edit was reverted (final review). The ledger holds normalised values; live sync normalises older ones."""
    from datetime import UTC, datetime

    from shared.events.model import ChangeEvent, Operation
    from shared.maps.transform import TargetRow
    from shared.sync.decide import normalize
    from shared.sync.plan import plan_change
    from shared.sync.rows import Current

    [d] = plan([fno_row("C1", PrimaryContactPhone="")], [])
    assert d.entry is not None
    for side in (Side.FNO, Side.DATAVERSE):
        assert all(v == normalize(v) for v in d.entry.side(side).values.values()), side
    d.entry.fno.values["PrimaryContactPhone"] = ""  # as an entry saved before this session holds it
    row = TargetRow(map="customers", into=Side.FNO, entity_set="CustomersV3", key=dict(d.key),
                    values={"PrimaryContactPhone": "555"})  # fmt: skip
    event = ChangeEvent(event_id="e1", source=Side.DATAVERSE, entity="account", operation=Operation.UPDATE,
                        row_id="x", occurred_at=datetime.now(UTC))  # fmt: skip
    current = Current({"dataAreaId": "usmf", "CustomerAccount": "C1", "PrimaryContactPhone": ""}, 'W/"abc"', None)
    p = plan_change(CUSTOMERS.map, Side.DATAVERSE, event, row, d.key, d.entry, current, read=True)
    assert p.conflict is None and "PrimaryContactPhone" not in p.back
    assert p.write is not None and p.write.values == {"PrimaryContactPhone": "555"}
