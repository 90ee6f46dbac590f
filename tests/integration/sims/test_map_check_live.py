"""`python -m shared.maps check --live` against both simulators, with the bridge's own settings: clean on the shipped
maps; then both apps are customized as a customizer would (a column removed, one re-added with another type, one
shortened, one turned into a lookup to an unsynced table, an option and an enum value dropped) and every problem is
reported at once, with map, field and reason."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tests.integration.sims.conftest import Sim
from tests.stack import ROOT


async def check(dv: Sim, fo: Sim, *args: str) -> tuple[int, str]:
    env = os.environ | {
        "DATAVERSE_URL": dv.url, "FNO_URL": fo.url, "LOCAL_BEARER_TOKEN": "t", "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.maps", "check", "--live", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def customize(sim: Sim, change: dict[str, Any]) -> None:
    response = await sim.admin.post("/_admin/schema", json=change)
    assert response.status_code == 200, response.text


async def test_the_shipped_maps_match_both_simulators(dv: Sim, fo: Sim) -> None:
    code, out = await check(dv, fo)
    assert (code, out.strip()) == (0, "16 map(s) match both apps' metadata")


async def test_every_customization_that_breaks_a_map_is_reported_at_once(dv: Sim, fo: Sim) -> None:
    options = [o for o in dv.simulator.tables["accounts"].columns["customertypecode"].options if o != 3]
    await customize(dv, {
        "entity_set": "accounts",
        "remove": ["msdyn_taxexemptnumber", "numberofemployees"],  # a mapped column gone; one to re-add
        "alter": [{"name": "accountnumber", "max_length": 10}, {"name": "customertypecode", "options": options},
                  {"name": "msdyn_identificationnumber", "type": "lookup", "target": "contacts"}],
    })  # fmt: skip
    await customize(dv, {"entity_set": "accounts", "add": [{"name": "numberofemployees", "type": "text",
                                                            "max_length": 5}]})  # fmt: skip
    symbols = [s for s in fo.simulator.tables["CustomersV3"].columns["PartyType"].options if s != "Organization"]
    await customize(fo, {
        "entity_set": "CustomersV3",
        "alter": [{"name": "OrganizationName", "max_length": 50}, {"name": "PartyType", "options": symbols}],
    })  # fmt: skip

    code, out = await check(dv, fo, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    found = {(p["map"], p["field"]): p["reason"] for p in report["problems"]}
    expected = {
        ("customers", "dataverse account.msdyn_taxexemptnumber"): "the column does not exist in Dataverse",
        ("customers", "dataverse account.accountnumber"): "text of up to 20 characters into a column of 10",
        ("customers", "dataverse account.numberofemployees"): "integer values need up to 11 characters; the column "
                                                              "holds 5",
        ("customers", "dataverse account.customertypecode"): "the default 3 is not defined",
        ("customers", "filters.dataverse"): "customertypecode is compared with 3, which is not defined",
        ("customers", "fno CustomersV3.OrganizationName"): "text of up to 160 characters into a column of 50",
        ("customers", "fno CustomersV3.PartyType"): "the default 'Organization' is not defined in DirPartyBaseType",
        ("customers", "filters.fno"): "PartyType::Organization is not defined",
        ("customers", "dataverse account.msdyn_identificationnumber"): "a lookup to contact, which no map syncs",
    }  # fmt: skip
    for where, reason in expected.items():
        assert where in found, f"{where} not reported; got {sorted(found)}"
        assert found[where].startswith(reason), (where, found[where])
    assert {m for m, _ in found} == {"customers"}  # the other maps are untouched by these customizations

    code, out = await check(dv, fo)  # the same, for a person
    assert code == 1 and out.startswith(f"{len(report['problems'])} problem(s) in 1 of 16 map(s):")
    assert "  customers: dataverse account.accountnumber: text of up to 20 characters into a column of 10" in out
