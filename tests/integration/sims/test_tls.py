"""`--tls`: both simulators serve HTTPS with a certificate from a local CA made at start-up, and only a client that
trusts that CA gets through (the real apps are HTTPS-only; Microsoft's Dataverse client refuses plain HTTP)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from tests import stack


@pytest.mark.parametrize(("kind", "root"), [("dataverse", "/api/data/v9.2/"), ("fno", "/data/")])
async def test_a_simulator_serves_https_with_its_own_ca(kind: str, root: str) -> None:
    with stack.simulator(kind, seed=False, tls=True) as url:
        assert url.startswith("https://")
        ca = stack.sim_ca_file(url)
        assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(f"{url}{root}$metadata")
        headers = {"Authorization": f"Bearer {stack.SIM_TOKEN}"}
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca), headers=headers) as trusting:
            r = await trusting.get(f"{url}/_admin/stats")
            assert r.status_code == 200
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.HTTPError):  # no plain HTTP on a TLS port
                await plain.get(url.replace("https://", "http://") + "/_admin/stats")
    assert not ca.exists()  # removed with the simulator
