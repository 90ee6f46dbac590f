"""`python -m local.watchdog`: stops the local stack's process groups if `python -m local` dies without doing it.

The parent writes one process group id per line on our stdin as it starts each service, and `done` once it has
stopped them itself. End of input without `done` means the parent died (SIGKILL, a crash, the OOM killer): we then
SIGTERM every group at once and SIGKILL what is left after a grace period. The parent-death signal (`prctl`) already
reaches each service's leader; this reaches the rest of each group (grandchildren, such as a wrapper's node), and
works where prctl does not exist. We run in our own session, so a signal to the parent's group does not stop us.
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE_SECONDS = 5.0


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pgids: set[int], sig: signal.Signals) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            continue


def stop_groups(pgids: set[int], grace_seconds: float = GRACE_SECONDS) -> None:
    _signal(pgids, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pgids):
        time.sleep(0.1)
    _signal(pgids, signal.SIGKILL)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pgids: set[int] = set()
    for line in sys.stdin:
        word = line.strip()
        if word == "done":
            return 0
        if word.isdigit():
            pgids.add(int(word))
    stop_groups(pgids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
