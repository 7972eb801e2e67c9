"""Hard kills under load: acknowledged predictions lost and duplicated over repeated ``kill -9``.

The real service (``cli.launcher.ServiceProcess``) on the sandbox of ``bench_serving`` (the
simulated lakehouse at 500 customers, reference features in a SQLite Feast store, an XGBoost
ScoringModel champion) is killed with ``kill -9`` on every process ``--kills`` times (default
6) while 8 clients send transactions, and restarted on the same port after each kill; a last
round of kills takes only the worker (BentoML's arbiter starts a new one). Clients retry each
id until it is answered 200 and re-send one answered id in ten. After the last restart the
figures are: acknowledged ids missing from the Delta prediction log (target 0) and rows beyond
one per (transaction_id, served_by) (target 0). The same loop with 3 kills and a small load is
``tests/serving/test_kill_loop.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_serving import KEY, _sandbox
from benchmarks.common import write_figures
from tests.serving.kill_loop import kill_loop

CLIENTS = 8
ANSWERS_PER_ROUND = 300


def main(kills: int = 6, worker_kills: int = 2) -> dict:
    """Build the sandbox, run the kill loop, print and write the figures."""
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-kill-"))
    started = time.perf_counter()
    try:
        env, _ = _sandbox(root)
        plan = ["tree"] * kills + ["worker"] * worker_kills
        figures: dict[str, object] = {
            "kill_plan": plan,
            "clients": CLIENTS,
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        }
        report = kill_loop(env, KEY, plan, CLIENTS, ANSWERS_PER_ROUND)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures.update(dataclasses.asdict(report))
    figures["load_average_at_end"] = os.getloadavg()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"{report.kills} kills ({kills} of every process, {worker_kills} of the worker): "
        f"{report.answered} ids answered 200 ({report.resent} re-sent), "
        f"{report.missing} missing from the log, {report.duplicates} duplicate rows; "
        f"back up after {report.restart_seconds} s"
    )
    write_figures("kill", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=6, help="kills of every process (>= 5)")
    parser.add_argument("--worker-kills", type=int, default=2, help="kills of the worker only")
    args = parser.parse_args()
    main(args.kills, args.worker_kills)
