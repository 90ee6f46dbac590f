"""`$batch` semantics the simulator keeps however it runs a request: each change set all or nothing, the change sets
before and after a failed one written, a request outside a change set alone, and the answers of create-only writes
by an assigned id (`PATCH accounts(<id>)` with `If-None-Match: *`, what a sync run sends) in Dataverse's order of
checks. Microsoft Learn, "Execute batch operations using the Web API" (change sets, `Prefer:
odata.continue-on-error`) and "Perform conditional operations using the Web API" (`If-None-Match: *`)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tests.integration.sims.conftest import Sim

BYPASS = "MSCRM.BypassBusinessLogicExecutionStepIds"


async def _company(sim: Sim, code: str = "USMF") -> str:
    r = await sim.http.get("cdm_companies", params={"$filter": f"cdm_companycode eq '{code}'"})
    return str(r.json()["value"][0]["cdm_companyid"])


def _operation(method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> str:
    lines = [f"{method} {url} HTTP/1.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    return "\r\n".join([*lines, "", json.dumps(body) if body is not None else ""])


def _batch(groups: list[list[str] | str]) -> tuple[str, bytes]:
    """A `$batch` body: a list is a change set of those operations, a string an operation outside any."""
    boundary = f"batch_{uuid.uuid4().hex}"
    out: list[str] = []
    number = 0
    for n, group in enumerate(groups):
        if isinstance(group, str):
            number += 1
            out += [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "", group]
            continue
        changeset = f"changeset_{n}"
        out += [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
        for operation in group:
            number += 1
            out += [f"--{changeset}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
            out += [f"Content-ID: {number}", "", operation]
        out += [f"--{changeset}--", ""]
    out += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(out).encode()


async def _send(sim: Sim, groups: list[list[str] | str]) -> list[tuple[int, str]]:
    """(status, body) of each response part, in order."""
    content_type, body = _batch(groups)
    headers = {"Content-Type": content_type, "Prefer": "odata.continue-on-error"}
    r = await sim.http.post("$batch", content=body, headers=headers)
    assert r.status_code == 200, r.text
    parts = re.findall(r"HTTP/1.1 (\d+) [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)", r.text)
    return [(int(status), body.strip()) for status, body in parts]


async def _writes(sim: Sim) -> int:
    return int((await sim.admin.get("/_admin/stats")).json()["writes"].get("accounts", 0))


async def test_a_failed_change_set_is_undone_alone_and_the_others_are_written(dv: Sim) -> None:
    company = await _company(dv)
    base = dv.url + dv.simulator.dialect.root
    ids = [str(uuid.uuid4()) for _ in range(4)]
    bind = {"msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='USMF')"}
    create = {"If-None-Match": "*", BYPASS: str(uuid.uuid4())}
    writes = await _writes(dv)
    answers = await _send(
        dv,
        [
            [_operation("PATCH", f"{base}accounts({ids[0]})?tag=t1", {"accountnumber": "CS-1", **bind}, create)],
            [  # written first, then undone with its change set when the second write fails
                _operation("PATCH", f"{base}accounts({ids[1]})", {"accountnumber": "CS-2", **bind}, create),
                _operation("PATCH", f"{base}accounts({ids[2]})", {"accountnumber": "CS-3", "nosuch": 1}, create),
            ],
            _operation("PATCH", f"accounts({ids[2]})", {"accountnumber": "CS-3", **bind, "nosuch": 1}, create),
            [_operation("PATCH", f"{base}accounts({ids[3]})", {"accountnumber": "CS-4", **bind}, create)],
        ],
    )
    assert [status for status, _ in answers] == [204, 400, 400, 204]
    assert json.loads(answers[1][1])["error"]["code"] == "0x80060888"
    assert (await dv.http.get(f"accounts({ids[1]})")).status_code == 404  # rolled back with its change set
    assert (await dv.http.get(f"accounts({ids[2]})")).status_code == 404
    first, last = (await dv.http.get(f"accounts({ids[0]})")).json(), (await dv.http.get(f"accounts({ids[3]})")).json()
    assert first["_msdyn_company_value"] == company and last["accountnumber"] == "CS-4"
    assert last["versionnumber"] > first["versionnumber"]  # versions only grow, a rolled-back one is never seen
    assert await _writes(dv) - writes == 2  # undone writes are not counted
    # The key of the undone row is free again: its change set left nothing behind.
    again = _operation("PATCH", f"{base}accounts({ids[1]})", {"accountnumber": "CS-2", **bind}, create)
    assert await _send(dv, [[again]]) == [(204, "")]


async def test_create_only_writes_by_id_answer_in_dataverse_order_of_checks(dv: Sim) -> None:
    base = dv.url + dv.simulator.dialect.root
    taken, other = str(uuid.uuid4()), str(uuid.uuid4())
    bind = {"msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='USMF')"}
    create = {"If-None-Match": "*"}

    def bound_to_no_company(row_id: str, number: str) -> str:
        nowhere = {"msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='NONE')"}
        return _operation("PATCH", f"{base}accounts({row_id})", {"accountnumber": number, **nowhere}, create)

    answers = await _send(
        dv,
        [
            [_operation("PATCH", f"{base}accounts({taken})", {"accountnumber": "ORD-1", **bind}, create)],
            # the id is taken: 412 before the body is read (an unknown column, a missing bind target)
            [_operation("PATCH", f"{base}accounts({taken})", {"accountnumber": "ORD-2", "nosuch": 1}, create)],
            [bound_to_no_company(taken, "ORD-2")],
            [_operation("PATCH", f"{base}accounts({taken})", {"accountnumber": "ORD-1", **bind}, create)],
            # a new id with the alternate key of another row
            [_operation("PATCH", f"{base}accounts({other})", {"accountnumber": "ORD-1", **bind}, create)],
            # a new id whose body is wrong: the body's error
            [_operation("PATCH", f"{base}accounts({other})", {"accountnumber": "ORD-3", "nosuch": 1}, create)],
            [bound_to_no_company(other, "ORD-3")],
            # too long a value is refused before anything else, even on a taken id
            [_operation("PATCH", f"{base}accounts({taken})", {"accountnumber": "ORD-4", "name": "x" * 10_000}, create)],
        ],
    )
    codes = [(status, json.loads(body)["error"]["code"] if body else "") for status, body in answers]
    assert codes == [
        (204, ""),
        (412, "0x80040237"),
        (412, "0x80040237"),
        (412, "0x80040237"),
        (412, "0x80060892"),
        (400, "0x80060888"),
        (404, "0x80040217"),
        (400, "0x80044331"),
    ]
    assert json.loads(answers[4][1])["error"]["message"].startswith("A record that has the attribute values")
    assert (await dv.http.get(f"accounts({other})")).status_code == 404
    assert (await dv.http.get(f"accounts({taken})")).json()["accountnumber"] == "ORD-1"
