"""The ledger's entity-group transaction encoder and answer reader (`shared/ledger/wire.py`) against a table that
answers as Azurite does (Microsoft Learn, "Performing entity group transactions": a multipart answer, one HTTP
response per operation in order, each with its ETag): every operation's ETag, in order, and a refused change set
raised with the refusing operation's status and code."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from shared.ledger.wire import TableRequestFailed, transact


def _part(status: str, headers: str) -> str:
    return (
        "--changesetresponse_c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"HTTP/1.1 {status}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\n"
        f"DataServiceVersion: 3.0;\r\n{headers}\r\n"
    )


def _answer(*parts: str) -> bytes:
    body = "".join(parts)
    return (
        "--batchresponse_b\r\nContent-Type: multipart/mixed; boundary=changesetresponse_c\r\n\r\n"
        f"{body}--changesetresponse_c--\r\n--batchresponse_b--\r\n"
    ).encode()


class _Response:
    def __init__(self, status: int, content: bytes) -> None:
        self.status_code = status
        self._content = content

    async def read(self) -> bytes:
        return self._content


class _Table:
    """What `transact` uses of an `azure.data.tables.aio.TableClient`: its names and its pipeline's `send_request`."""

    url, table_name, scheme = "http://127.0.0.1:1/devstoreaccount1", "ledger", "http"
    _primary_hostname, api_version = "127.0.0.1:1/devstoreaccount1", "2019-02-02"

    def __init__(self, status: int, content: bytes) -> None:
        self.answer = _Response(status, content)
        self.sent: list[Any] = []
        self._client = self

    async def send_request(self, request: Any, stream: bool = True) -> _Response:
        self.sent.append(request)
        return self.answer


OPERATIONS = [
    ("create", {"PartitionKey": "customers", "RowKey": "CustomerAccount=c1|dataAreaId=usmf", "Entry": '{"a": "é"}'}),
    ("upsert", {"PartitionKey": "customers", "RowKey": "id:dataverse:0f", "Key": "{}"}),
    ("update", {"PartitionKey": "customers", "RowKey": "it's", "Entry": "{}"}, {"etag": 'W/"7"'}),
]


def test_each_operation_answers_its_own_etag_in_order() -> None:
    location = "Location: http://127.0.0.1:1/devstoreaccount1/ledger(PartitionKey='customers',RowKey='x')\r\n"
    table = _Table(202, _answer(
        _part("204 No Content", f"{location}ETag: W/\"datetime'2026-11-30T11%3A54%3A29.1021594Z'\"\r\n"),
        _part("204 No Content", "etag:W/\"2\"\r\n"),  # a header's name in any case, no space after the colon
        _part("204 No Content", ""),  # none given: None
    ))  # fmt: skip
    answers = asyncio.run(transact(table, OPERATIONS))
    assert answers == [{"etag": "W/\"datetime'2026-11-30T11%3A54%3A29.1021594Z'\""}, {"etag": 'W/"2"'}, {"etag": None}]
    body = table.sent[0].content.decode()
    assert "POST http://127.0.0.1:1/devstoreaccount1/ledger HTTP/1.1" in body and "Prefer: return-no-content" in body
    assert (
        "PUT http://127.0.0.1:1/devstoreaccount1/ledger(PartitionKey='customers',RowKey='id%3Adataverse%3A0f')" in body
    )
    assert "RowKey='it%27%27s')" in body and 'If-Match: W/"7"' in body
    assert json.dumps(OPERATIONS[0][1], ensure_ascii=False) in body  # the entity as JSON, not escaped to ASCII


def test_a_refused_change_set_raises_the_refusing_operations_status_and_code() -> None:
    refused = '{"odata.error":{"code":"UpdateConditionNotSatisfied","message":{"value":"The update condition…"}}}'
    table = _Table(202, _answer(_part("412 Precondition Failed", "Content-Type: application/json\r\n\r\n" + refused)))
    with pytest.raises(TableRequestFailed) as failed:
        asyncio.run(transact(table, OPERATIONS))
    assert failed.value.status == 412 and failed.value.code == "UpdateConditionNotSatisfied" and failed.value.conflict


def test_an_answer_missing_operations_is_a_failure() -> None:
    table = _Table(202, _answer(_part("204 No Content", 'ETag: W/"1"\r\n')))
    with pytest.raises(TableRequestFailed) as failed:
        asyncio.run(transact(table, OPERATIONS))
    assert failed.value.status == 500
