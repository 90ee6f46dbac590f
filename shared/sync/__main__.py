"""`python -m shared.sync run|plan|reconcile|status` — the name issue 14 gives the sync-run command; the same as
`python -m shared.initialsync` (see there)."""

from __future__ import annotations

import sys

from shared.initialsync.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
