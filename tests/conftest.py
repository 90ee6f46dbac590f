from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.processes import AzuritePorts
from tests import stack


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuritePorts]:
    """One Azurite for the whole run, on free ports, stopped by pid at the end."""
    with stack.azurite() as ports:
        yield ports


@pytest.fixture(scope="session")
def storage_connection_string(azurite: AzuritePorts) -> str:
    return azurite.connection_string()


@pytest.fixture(scope="session")
def dataverse_sim() -> Iterator[str]:
    """The Dataverse simulator, seeded; tests use their own keys so they never collide."""
    with stack.simulator("dataverse") as url:
        yield url


@pytest.fixture(scope="session")
def fno_sim() -> Iterator[str]:
    with stack.simulator("fno") as url:
        yield url
