"""A `$batch` change set that inserts, updates, deletes and then fails leaves rows, versions and cached reads as
they were; a create-only write by id checks a taken id before it reads the body's binds."""

from __future__ import annotations

import uuid

from tests.integration.sims.conftest import Sim
from tests.integration.sims.test_batch_change_sets import BYPASS, _operation, _send


async def test_insert_then_update_then_failure_leaves_nothing_and_reads_are_fresh(dv: Sim) -> None:
    base = dv.url + dv.simulator.dialect.root
    bind = {"msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='USMF')"}
    create = {"If-None-Match": "*", BYPASS: str(uuid.uuid4())}
    existing = str(uuid.uuid4())
    assert await _send(
        dv,
        [
            [
                _operation(
                    "PATCH", f"{base}accounts({existing})", {"accountnumber": "P-0", "name": "Orig", **bind}, create
                )
            ]
        ],
    ) == [(204, "")]
    before = (await dv.http.get(f"accounts({existing})")).json()
    f = {"$filter": "accountnumber eq 'P-0'"}
    g = {"$filter": "startswith(accountnumber,'P-')", "$orderby": "accountnumber desc"}
    assert [r["name"] for r in (await dv.http.get("accounts", params=f)).json()["value"]] == ["Orig"]
    n_before = len((await dv.http.get("accounts", params=g)).json()["value"])
    new = [str(uuid.uuid4()) for _ in range(3)]
    answers = await _send(
        dv,
        [
            [
                _operation("PATCH", f"{base}accounts({new[0]})", {"accountnumber": "P-1", **bind}, create),
                _operation("PATCH", f"{base}accounts({existing})", {"name": "Changed"}, {"If-Match": "*"}),
                _operation("PATCH", f"{base}accounts({new[1]})", {"accountnumber": "P-2", **bind}, create),
                _operation("DELETE", f"{base}accounts({new[0]})", None, {"If-Match": "*"}),
                _operation("PATCH", f"{base}accounts({new[2]})", {"accountnumber": "P-0", **bind}, create),  # key taken
            ]
        ],
    )
    assert answers[-1][0] == 412, answers
    for i in new:
        assert (await dv.http.get(f"accounts({i})")).status_code == 404
    after = (await dv.http.get(f"accounts({existing})")).json()
    assert after["name"] == "Orig" and after["versionnumber"] == before["versionnumber"]
    assert [r["name"] for r in (await dv.http.get("accounts", params=f)).json()["value"]] == ["Orig"]
    assert len((await dv.http.get("accounts", params=g)).json()["value"]) == n_before
    # the ids and key are free again
    again = [
        _operation("PATCH", f"{base}accounts({i})", {"accountnumber": f"P-{n}", **bind}, create)
        for n, i in enumerate(new, 1)
    ]
    assert await _send(dv, [again]) == [(204, "")] * 3
    assert len((await dv.http.get("accounts", params=g)).json()["value"]) == n_before + 3


async def test_a_taken_id_is_refused_412_before_a_malformed_bind_is_parsed(dv: Sim) -> None:
    """A taken id answers 412 whatever the body holds (the id is looked up once the body is refused); a bind whose
    key cannot be read is a 400, never a server error."""
    base = dv.url + dv.simulator.dialect.root
    bind = {"msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='USMF')"}
    create = {"If-None-Match": "*"}
    taken = str(uuid.uuid4())
    assert await _send(
        dv, [[_operation("PATCH", f"{base}accounts({taken})", {"accountnumber": "M-1", **bind}, create)]]
    ) == [(204, "")]
    bad = {"accountnumber": "M-2", "msdyn_company@odata.bind": "/cdm_companies(notaguid)"}
    r = await dv.http.patch(f"accounts({taken})", json=bad, headers=create)
    assert r.status_code == 412, (r.status_code, r.text[:200])
    fresh = str(uuid.uuid4())
    r = await dv.http.patch(f"accounts({fresh})", json=bad, headers=create)
    assert r.status_code == 400, (r.status_code, r.text[:200])
