"""`python -m shared.sync` from a terminal with an app out of reach: one line and exit 1, not a stack trace, and the
run is left failed with the reason — not `running`, which nothing would carry on (no queued step redelivers a
terminal's run) and which held reconciliation back for the liveness lease (go-live review)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from local.processes import ROOT, free_port
from tests import stack


def test_the_terminal_command_fails_cleanly_and_leaves_the_run_failed_when_an_app_is_down() -> None:
    with stack.azurite() as ports:
        env = {**os.environ, "AzureWebJobsStorage": ports.connection_string(),
               "DATAVERSE_URL": f"http://127.0.0.1:{free_port()}", "FNO_URL": f"http://127.0.0.1:{free_port()}",
               "LOCAL_BEARER_TOKEN": stack.SIM_TOKEN, "CONNECTOR_RETRY_ATTEMPTS": "1",
               "CONNECTOR_RETRY_SECONDS": "1"}  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "shared.sync", "plan", "customers"], env=env, cwd=ROOT,
                              capture_output=True, timeout=120, check=False)  # fmt: skip
        err = done.stderr.decode()
        assert done.returncode == 1 and "Traceback" not in err and "failed:" in err, err
        status = subprocess.run([sys.executable, "-m", "shared.sync", "status"], env=env, cwd=ROOT,
                                capture_output=True, timeout=60, check=False)  # fmt: skip
        report = json.loads(status.stdout)
        assert report["state"] == "failed" and "rerun-failed" in report["message"], report
