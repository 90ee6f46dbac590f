"""Hypothesis strategies: real notifications, then broken the ways a sender, a proxy or an attacker breaks them.

Seeds are the public samples (`tests/fixtures/samples/`, copied from `../shared/samples/`) and documents built in the
documented encodings (`builders.py`) for every form each endpoint takes. A mutation picks any node of a seed and
replaces it with a value of another type (lists, objects, nulls, numbers, huge strings, dates out of range…), drops
or duplicates an object member, renames it, or wraps it; the body may then be truncated, re-encoded, or spliced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.unit.events.builders import (
    COLLECTION,
    MONEY,
    OPTION,
    REF,
    business_event,
    context,
    entity,
    money,
    option,
    ref,
)

SAMPLES = Path(__file__).parents[2] / "fixtures" / "samples"
ROW = "0a0a0a0a-1111-2222-3333-444455556666"
VIRTUAL_ID = "9f0e8d7c-6b5a-4938-8271-605f4e3d2c1b"
EMPTY = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Raw:
    """JSON text written as it is: numbers Python would not write, nesting too deep to build."""

    text: str


@dataclass(frozen=True)
class Members:
    """An object whose members may repeat a name, which a dict cannot hold."""

    items: tuple[tuple[str, Any], ...]


def dumps(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Members):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)  # NaN and Infinity come out as the non-JSON words a lax sender writes


# --- seeds --------------------------------------------------------------------------------------------------------


def _dataverse_account() -> dict[str, Any]:
    target = entity(
        "account",
        ROW,
        {
            "name": "Contoso",
            "accountnumber": "US-001",
            "primarycontactid": ref("contact", "AAAAAAAA-0000-0000-0000-000000000001", "Yvonne"),
            "customertypecode": option(3),
            "msdyn_tags": [option(1), option(5)],
            "creditlimit": money(2154.32),
            "numberofemployees": 42,
            "donotemail": False,
            "lastusedincampaign": "/Date(1506384247000)/",
            "description": None,
            "msdyn_parties": {
                "__type": COLLECTION,
                "Entities": [entity("activityparty", ROW, {"partyid": ref("contact", ROW)})],
            },
        },
        row_version="470867",
    )
    pre = entity("account", ROW, {"name": "Old", "accountnumber": "US-001"}, typed=False)
    return context("Update", "account", ROW, target, pre=pre, shared={"tag": "sync-1"}, parent_shared={"x": 1})


def _dataverse_create() -> dict[str, Any]:
    target = entity("account", EMPTY, {"name": "New", "accountnumber": "US-002"})
    return context("Create", "account", EMPTY, target, outputs={"id": ROW})


def _dataverse_delete() -> dict[str, Any]:
    return context("Delete", "account", ROW, ref("account", ROW), pre=entity("account", ROW, {"name": "Gone"}))


def _data_event(message: str = "OnExternalUpdated") -> dict[str, Any]:
    fields = {
        "mserp_customeraccount": "US-001",
        "mserp_organizationname": "Contoso",
        "mserp_dataareaid": "USMF",
        "mserp_creditlimit": 1000.5,
        "mserp_customertype": option(200000001),
        "mserp_custcustomerv3entityid": VIRTUAL_ID,
    }
    target = entity("mserp_custcustomerv3entity", VIRTUAL_ID, fields)
    return context(message, "mserp_custcustomerv3entity", EMPTY, target)


def _wrapped_business_event() -> dict[str, Any]:
    inner = business_event("SalesOrderConfirmedBusinessEvent", 3, SalesOrderNumber="SO-3")
    wrapper = context("msdyn_SalesOrderConfirmed", "none", EMPTY, None)
    wrapper["InputParameters"] = [{"key": "payload", "value": json.dumps(inner)}]
    return wrapper


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def dataverse_seeds() -> list[Any]:
    return [
        _sample("dataverse-webhook-update-contact.json"),
        _dataverse_account(),
        _dataverse_create(),
        _dataverse_delete(),
    ]


def fno_seeds() -> list[Any]:
    credit = business_event("CustomerCreditLimitChangedBusinessEvent", 7, CustomerAccount="US-001", CreditLimit=5)
    return [
        _sample("fno-business-event-schema-batch-job-started.json"),
        _data_event(),
        _data_event("OnExternalDeleted"),
        business_event("SalesOrderConfirmedBusinessEvent", 10, SalesOrderNumber="SO-10", Lines=[{"Qty": 1.5}]),
        credit,
        business_event("BusinessEventsTestEndpointContract", 0),
        [credit, _data_event("OnExternalCreated"), business_event("NobodyBindsThis", 12)],
        _wrapped_business_event(),
    ]


# --- values of the wrong kind -------------------------------------------------------------------------------------

_odd_text = st.sampled_from(
    [
        "",
        " ",
        "x" * 70_000,
        "/Date(99999999999999999)/",
        "/Date(-99999999999999)/",
        "/Date(1506409448000+9999)/",
        "/Date(253402300799999+1400)/",
        "/Date(1506409448000-0700)/",
        "/Date(never)/",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.9999999-01:00",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20.1234567Z",
        "{00000000-0000-0000-0000-000000000000}",
        "\ud800",
        "caf\u00e9 \u0000 \u202e",
        "Update",
        "OnExternalUpdated",
        "BusinessEventsTestEndpointContract",
        "SalesOrderConfirmedBusinessEvent",
        "mserp_custcustomerv3entity",
        "account",
        "Target",
    ]
)
_odd_number = st.sampled_from(
    [
        Raw("1e999999999"),
        Raw("-1E-999999999"),
        Raw("9" * 5000),
        Raw("0." + "1" * 400),
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("1.5"),
        0,
        -1,
        2**63,
        10**40,
        True,
    ]
)
_typed_objects = st.sampled_from(
    [
        {"__type": OPTION, "Value": "3"},
        {"__type": OPTION, "Value": True},
        {"__type": MONEY, "Value": True},
        {"__type": MONEY, "Value": [1]},
        {"__type": MONEY, "Value": Raw("1e999999999")},
        {"__type": REF, "LogicalName": ["account"], "Id": {"x": 1}, "Name": 5},
        {"__type": COLLECTION, "Entities": {"a": 1}},
        {"__type": COLLECTION, "Entities": [1, "x", None]},
        {"__type": COLLECTION, "Entities": [{"Attributes": {"a": []}, "Id": [1]}]},
        {"Value": 3},
        {"LogicalName": {}, "Id": []},
        {"Attributes": "x"},
        {"Attributes": [{"key": ["k"], "value": 1}]},
        [{"key": "Target", "value": None}, {"key": "Target", "value": {}}],
        [{"key": {"a": 1}, "value": 1}],
        [{"value": 1}],
        Raw("[" * 3000 + "]" * 3000),
        Raw('{"a":' * 200 + "1" + "}" * 200),
    ]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
odd_values = st.one_of(_odd_text, _odd_number, _typed_objects, _json, st.just([]), st.just({}), st.none())


# --- mutating a document ------------------------------------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _replace(node: Any, path: tuple[Any, ...], make: Any) -> Any:
    """A copy of `node` with the value at `path` replaced by `make(old, parent_key)`."""
    if not path:
        return make(node)
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: (_replace(v, rest, make) if k == head else v) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, rest, make) if i == head else v for i, v in enumerate(node)]
    return node


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any]) -> Any:
    document = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "duplicate", "rename", "wrap"]))
        if how == "replace":
            value = draw(odd_values)
            document = _replace(document, path, lambda _old, v=value: v)
        elif how == "wrap":
            document = _replace(document, path, lambda old: draw(st.sampled_from([[old], {"Value": old}])))
        elif path and how in ("drop", "duplicate", "rename"):
            parent, name = path[:-1], path[-1]

            def change(node: Any, how: str = how, name: Any = name) -> Any:
                if not isinstance(node, dict):
                    return node
                if how == "drop":
                    return {k: v for k, v in node.items() if k != name}
                if how == "rename":
                    return {(str(k).upper() if k == name else k): v for k, v in node.items()}
                again = draw(odd_values)
                return Members((*node.items(), (name, again)))

            document = _replace(document, parent, change)
    return document


_ENCODINGS = ["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]


@st.composite
def bodies(draw: st.DrawFn, seeds: list[Any]) -> bytes:
    """A mutated seed as bytes; sometimes broken further at the byte level."""
    text = dumps(draw(mutated(seeds)))
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "encoding", "bom", "splice"]))
    if damage == "encoding":
        return ("\u00e9" + text).encode(draw(st.sampled_from(_ENCODINGS)), errors="replace")
    raw = text.encode("utf-8", errors="surrogatepass")
    if damage == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if damage == "bom":
        return b"\xef\xbb\xbf" + raw
    if damage == "splice":
        at = draw(st.integers(0, len(raw)))
        return (
            raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"}", b'"', b",", b"\xed\xa0\x80"])) + raw[at:]
        )
    return raw


headers = st.sampled_from([{}, {"x-ms-dynamics-msg-size-exceeded": "true"}, {"x-ms-correlation-request-id": "c-1"}])
