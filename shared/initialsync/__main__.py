"""`python -m shared.initialsync run|plan|status` — a sync run from a terminal, with a progress line.

    run    [MAP …] [--failed]   compare and write (every enabled map, in dependency order, unless named);
                                --failed reruns only the rows in the error log
    plan   [MAP …]              compare and report what a run would do; writes nothing
    reconcile [MAP …]           a run that records each repaired row as drift
    status [RUN_ID]             a run's report (the latest without an id)

Settings as the app's (DATAVERSE_URL, FNO_URL, AzureWebJobsStorage …, from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from shared.bridge import close_bridge
from shared.initialsync import liveness, service
from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import new_run
from shared.initialsync.wiring import get_runner


def _progress(run: RunState) -> None:
    parts = []
    for name, p in run.progress.items():
        if p.state in ("writing", "done", "reading"):
            width = 20
            filled = int(width * p.processed / p.planned) if p.planned else (width if p.state == "done" else 0)
            parts.append(f"{name} [{'#' * filled}{'.' * (width - filled)}] {p.processed}/{p.planned}")
    print("\r" + "  ".join(parts[-2:]), end="", file=sys.stderr, flush=True)


async def _main(args: argparse.Namespace) -> int:
    runner = get_runner()
    try:
        if args.command == "status":
            run_id = args.run_id or max(await runner.runs.runs(), key=lambda r: r.created_at, default=None)
            try:  # as the API reports it: a run whose step is gone is failed, with the reason
                if run_id is None:
                    raise service.RunNotFound
                found = await service.report(run_id if isinstance(run_id, str) else run_id.run_id, runner)
            except service.RunNotFound:
                print("no such run", file=sys.stderr)
                return 1
            print(json.dumps(found.report(), indent=2))
            return 0
        mode = {"run": Mode.SYNC, "plan": Mode.PLAN, "reconcile": Mode.RECONCILE}[args.command]
        run = new_run(mode, runner.maps, args.maps, only_failed=bool(getattr(args, "failed", False)))
        print(f"run {run.run_id}: {', '.join(run.maps)}", file=sys.stderr)
        try:
            await runner.run(run, _progress)
        except Exception as exc:
            # No queue carries a terminal's run on (a step's message would be redelivered): failed, with the reason,
            # so it neither shows as running nor holds reconciliation back; it resumes from its checkpoint.
            reason = _one_line(exc)
            liveness.fail(run, f"stopped: {reason}; POST /api/sync/{run.run_id}/rerun-failed resumes it")
            try:
                await runner.runs.save(run)
            except Exception:
                pass  # storage itself may be what failed: the run then stays as last saved
            print(f"\nrun {run.run_id} failed: {reason}", file=sys.stderr)
            return 1
        print(file=sys.stderr)
        print(json.dumps(run.report(), indent=2))
        return 0
    finally:
        await close_bridge()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.initialsync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compare and write")
    run.add_argument("maps", nargs="*")
    run.add_argument("--failed", action="store_true", help="only the rows in the error log")
    sub.add_parser("plan", help="compare only: counts and samples").add_argument("maps", nargs="*")
    sub.add_parser("reconcile", help="compare, repair, record drift").add_argument("maps", nargs="*")
    sub.add_parser("status", help="a run's report").add_argument("run_id", nargs="?")
    args = parser.parse_args()
    try:
        return asyncio.run(_main(args))
    except ValueError as exc:  # an unknown map, a map set that does not load
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # storage or an app out of reach: one line, not a stack trace
        print(f"failed: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
