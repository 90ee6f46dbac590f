"""The process's one sync runner: the composition root's (`shared.bridge`), which builds and closes it."""

from __future__ import annotations

from shared.bridge import bridge
from shared.initialsync.run import SyncRunner


def get_runner() -> SyncRunner:
    return bridge().sync_runner
