"""Repeated ``kill -9`` under load: no acknowledged row lost, none logged twice.

Three kills of every process of the real service under a small load, each followed by a
restart on the same port, with four clients that retry until answered and re-send some
answered ids. The test costs four service starts (about a minute on a quiet 2-core machine).
The full figures (more kills, more clients, the production model type) come from
``benchmarks/bench_kill.py``.
"""

from __future__ import annotations

from tests.serving import fixtures as fx
from tests.serving.kill_loop import kill_loop

KEY = "key-kill-loop"


def test_kill_loop_loses_nothing_and_duplicates_nothing(tmp_path, registry, feast_repo):
    env = fx.service_env(
        tmp_path / "home",
        registry,
        feast_repo,
        serving_api_keys=[KEY],
        serving_rate_limit_per_s=1e9,
        serving_rate_limit_burst=10**9,
        serving_feature_timeout_ms=2_000,
        serving_mode="canary",
        serving_canary_share=0.3,
    )
    report = kill_loop(
        env, KEY, kills=["worker", "tree", "worker"], clients=4, answers_per_round=40
    )
    print(report)
    assert report.answered >= 4 * 40 and report.resent > 0
    assert report.missing == 0, report
    assert report.duplicates == 0, report
