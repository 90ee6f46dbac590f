from tests.integration.sims.conftest import dv, fo  # noqa: F401  (in-process simulators, one per test)
