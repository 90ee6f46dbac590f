"""Dataverse webhook bodies → ChangeEvent: every documented value encoding and message shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.events.dataverse import parse_dataverse
from shared.events.errors import InvalidNotification
from shared.events.model import ChangeEvent, Ignored, Operation, Side
from tests.unit.events.builders import COLLECTION, OPTION, body, context, entity, money, option, ref

SAMPLES = Path(__file__).parents[2] / "fixtures" / "samples"
ROW = "6d81597f-0f9f-e711-8122-000d3aa2331c"


def one(raw: bytes, headers: dict[str, str] | None = None) -> ChangeEvent:
    (event,) = parse_dataverse(raw, headers or {})
    assert isinstance(event, ChangeEvent)
    return event


def test_the_microsoft_docs_sample_update_of_a_contact() -> None:
    event = one((SAMPLES / "dataverse-webhook-update-contact.json").read_bytes())
    assert event.source == Side.DATAVERSE and event.entity == "contact" and event.operation == Operation.UPDATE
    assert event.row_id == ROW
    # the Target's columns are the change; the post-image adds the rest of the known row
    assert event.changed_fields == [
        "firstname",
        "contactid",
        "fullname",
        "yomifullname",
        "modifiedon",
        "modifiedby",
        "modifiedonbehalfby",
    ]
    assert event.fields["firstname"] == "James"
    assert event.fields["modifiedonbehalfby"] is None  # explicit null, not absent
    assert event.fields["modifiedon"] == {"$type": "datetime", "value": "2017-09-26T00:04:07+00:00"}
    assert event.fields["modifiedby"] == {
        "$type": "lookup", "table": "systemuser", "id": "11bb11bb-cc22-dd33-ee44-55ff55ff55ff", "name": None,
    }  # fmt: skip
    assert event.occurred_at.isoformat() == "2017-09-26T07:04:08+00:00"  # /Date(1506409448000-0700)/ is a UTC instant
    # No RowVersion and no versionnumber: no version. Not modifiedon — to the second only, a second change of the row
    # within the same second would look the same version and be skipped as stale (fidelity audit).
    assert event.source_version is None
    assert event.initiating_user == "11bb11bb-cc22-dd33-ee44-55ff55ff55ff"
    assert event.user == "11bb11bb-cc22-dd33-ee44-55ff55ff55ff"
    assert event.correlation_id == "aaaa0000-bb11-2222-33cc-444444dddddd"
    assert event.write_tag is None and not event.reread_required


def test_every_value_encoding() -> None:
    target = entity(
        "account",
        ROW,
        {
            "name": "Contoso \u000a Ltd",
            "primarycontactid": ref("contact", "AAAAAAAA-0000-0000-0000-000000000001", "Yvonne"),
            "customertypecode": option(3),
            "msdyn_tags": [option(1), option(5)],
            "creditlimit": money(2154.32),
            "revenue": money(1000),
            "exchangerate": "EXACT-DECIMAL",
            "numberofemployees": 42,
            "donotemail": False,
            "lastusedincampaign": "/Date(1506384247000)/",
            "description": None,
            "msdyn_parties": {
                "__type": COLLECTION,
                "Entities": [
                    entity(
                        "activityparty",
                        "BBBBBBBB-0000-0000-0000-000000000002",
                        {"partyid": ref("contact", "CCCCCCCC-0000-0000-0000-000000000003")},
                    )
                ],
            },
        },
        row_version="470867",
    )
    # json.dumps would round the decimal: write the exact digits by hand
    raw = body(context("Update", "account", ROW, target)).replace(b'"EXACT-DECIMAL"', b"1.234567890123456789")
    f = one(raw).fields
    assert f["name"] == "Contoso \n Ltd"
    assert f["primarycontactid"] == {
        "$type": "lookup",
        "table": "contact",
        "id": "aaaaaaaa-0000-0000-0000-000000000001",
        "name": "Yvonne",
    }
    assert f["customertypecode"] == {"$type": "choice", "value": 3}
    assert f["msdyn_tags"] == {"$type": "choices", "values": [1, 5]}
    assert f["creditlimit"] == {"$type": "money", "value": "2154.32"}
    assert f["revenue"] == {"$type": "money", "value": "1000"}
    assert f["exchangerate"] == {"$type": "decimal", "value": "1.234567890123456789"}  # exact, not a float
    assert f["numberofemployees"] == 42 and f["donotemail"] is False
    assert f["lastusedincampaign"] == {"$type": "datetime", "value": "2017-09-26T00:04:07+00:00"}
    assert f["description"] is None and "telephone1" not in f
    parties = f["msdyn_parties"]
    assert isinstance(parties, dict) and parties["$type"] == "entities"
    assert parties["entities"] == [
        {
            "table": "activityparty",
            "id": "bbbbbbbb-0000-0000-0000-000000000002",
            "fields": {
                "partyid": {
                    "$type": "lookup",
                    "table": "contact",
                    "id": "cccccccc-0000-0000-0000-000000000003",
                    "name": None,
                }
            },
        }
    ]


def test_update_merges_pre_and_post_images_under_the_target() -> None:
    pre = entity("account", ROW, {"name": "Old", "telephone1": "111", "accountnumber": "A1"}, typed=False)
    post = entity(
        "account", ROW, {"name": "New", "telephone1": "111", "accountnumber": "A1"}, row_version="99", typed=False
    )
    target = entity("account", ROW, {"name": "New"})
    event = one(body(context("Update", "account", ROW, target, pre=pre, post=post)))
    assert event.fields == {"name": "New", "telephone1": "111", "accountnumber": "A1"}
    assert event.changed_fields == ["name"]
    assert event.source_version == "99"  # the post-image's RowVersion


def test_update_without_images_carries_only_the_target() -> None:
    target = entity("account", ROW, {"name": "Only this", "versionnumber": 1234})
    event = one(body(context("Update", "account", ROW, target)))
    assert event.fields == {"name": "Only this", "versionnumber": 1234}
    assert event.source_version == "1234"


def test_create_takes_the_id_from_the_output_parameters_when_the_target_has_none() -> None:
    target = entity("account", "00000000-0000-0000-0000-000000000000", {"name": "Fresh"})
    ctx = context("Create", "account", "00000000-0000-0000-0000-000000000000", target, outputs={"id": ROW.upper()})
    event = one(body(ctx))
    assert event.operation == Operation.CREATE and event.row_id == ROW


def test_delete_with_an_entity_reference_target_and_a_pre_image() -> None:
    pre = entity("account", ROW, {"accountnumber": "A1", "name": "Gone"}, typed=False)
    event = one(body(context("Delete", "account", ROW, ref("account", ROW), pre=pre)))
    assert event.operation == Operation.DELETE and event.row_id == ROW
    assert event.fields == {"accountnumber": "A1", "name": "Gone"}
    assert event.changed_fields == []


def test_size_exceeded_header_marks_the_event_for_a_re_read() -> None:
    ctx = context("Update", "account", ROW, None)
    del ctx["ParentContext"]
    event = one(body(ctx), {"X-MS-Dynamics-Msg-Size-Exceeded": "true"})
    assert event.reread_required and event.row_id == ROW and event.fields == {}


def test_the_write_tag_is_found_in_the_context_or_its_parent() -> None:
    target = entity("account", ROW, {"name": "x"})
    assert one(body(context("Update", "account", ROW, target, shared={"tag": "w-1"}))).write_tag == "w-1"
    from_parent = context("Update", "account", ROW, target, parent_shared={"tag": "w-parent"})
    assert one(body(from_parent)).write_tag == "w-parent"
    nearest = context("Update", "account", ROW, target, shared={"tag": "w-near"}, parent_shared={"tag": "w-far"})
    assert one(body(nearest)).write_tag == "w-near"


def test_the_same_notification_twice_has_the_same_id_and_another_change_another() -> None:
    target = entity("account", ROW, {"name": "x"}, row_version="1")
    first = one(body(context("Update", "account", ROW, target)))
    again = one(body(context("Update", "account", ROW, target)))
    assert first.event_id == again.event_id
    later = one(body(context("Update", "account", ROW, entity("account", ROW, {"name": "y"}, row_version="2"))))
    other_operation = one(
        body(context("Update", "account", ROW, target, operation_id="5bf10637-4ea2-e711-8122-000d3aa2331c"))
    )
    assert len({first.event_id, later.event_id, other_operation.event_id}) == 3


def test_other_messages_are_ignored_not_refused() -> None:
    (item,) = parse_dataverse(body(context("Assign", "account", ROW, ref("account", ROW))), {})
    assert isinstance(item, Ignored) and "Assign" in item.reason


def test_unknown_and_missing_keys_are_tolerated() -> None:
    minimal = {
        "MessageName": "Update",
        "PrimaryEntityName": "account",
        "PrimaryEntityId": ROW,
        "InputParameters": [
            {
                "key": "Target",
                "value": {"LogicalName": "account", "Id": ROW, "Attributes": [{"key": "name", "value": "n"}]},
            }
        ],
        "SomethingNew": {"nested": True},
    }
    event = one(json.dumps(minimal).encode())
    assert event.fields == {"name": "n"} and event.source_version is None


def test_utf8_bodies_are_decoded_from_bytes() -> None:
    target = entity("account", ROW, {"name": "Müller & Søn — 東京"})
    raw = json.dumps(context("Update", "account", ROW, target), ensure_ascii=False).encode("utf-8")
    assert one(raw).fields["name"] == "Müller & Søn — 東京"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "empty"),
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe\x00bad", "UTF-8"),
        (b'{"hello": "world"}', "not a RemoteExecutionContext"),
        (b"[1, 2]", "not a RemoteExecutionContext"),
        (body({"MessageName": "Update", "PrimaryEntityName": "account", "InputParameters": []}), "Target"),
        (body(context("Update", "account", ROW, entity("account", ROW, {"modifiedon": "/Date(abc)/"}))), None),
        (
            body(context("Update", "account", ROW, entity("account", ROW, {}))).replace(
                b'"/Date(1506409448000-0700)/"', b'"/Date(oops)/"'
            ),
            "OperationCreatedOn",
        ),
        (
            body(context("Update", "account", ROW, entity("account", ROW, {"c": {"__type": OPTION, "Value": "x"}}))),
            "OptionSetValue",
        ),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(raw: bytes, words: str | None) -> None:
    if words is None:  # a string that merely looks like a date is kept as text
        (event,) = parse_dataverse(raw, {})
        assert isinstance(event, ChangeEvent) and event.fields["modifiedon"] == "/Date(abc)/"
        return
    with pytest.raises(InvalidNotification, match=words):
        parse_dataverse(raw, {})


def test_the_version_is_the_images_versionnumber_the_registration_asks_for() -> None:
    """Targets and images carry `RowVersion: null` (the docs sample); the steps' images name `versionnumber`
    (shared/registration/plan.py), so the row's version comes as that column of the post-image."""
    from shared.events.dataverse import _version

    columns = [{"key": "name", "value": "A"}, {"key": "versionnumber", "value": 468026}]
    image = {"Attributes": columns, "RowVersion": None}
    assert _version({"RowVersion": None}, [image], {"versionnumber": 468026}) == "468026"
    assert _version({"RowVersion": None}, [], {"modifiedon": {"$type": "datetime", "value": "2017-09-26"}}) is None
