"""Per-key fairness with the default limits: while one key sends at full speed and is refused
beyond its rate (its 429s held), another key's requests are all answered.

The clients and the windows are those of tests/serving/fairness.py. How much the flood costs the
other key's p99 is a timing figure: benchmarks/bench_fairness.py measures it against its target
(within twice the unloaded p99); the test asserts what the limits guarantee.
"""

from __future__ import annotations

import pytest

from fraudops.settings import Settings
from tests.serving import fairness
from tests.serving import fixtures as fx

FLOOD_KEY, POLITE_KEY = "fair-flood", "fair-polite"


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry, feast_repo):
    """A service with the default limits and two keys."""
    env = fx.service_env(
        tmp_path_factory.mktemp("fairness"),
        registry,
        feast_repo,
        serving_api_keys=[FLOOD_KEY, POLITE_KEY],
        # A slow lookup on the shared test machine must not turn into a degraded answer.
        serving_feature_timeout_ms=2_000,
    )
    server = fx.server_process(env).start()
    yield server
    server.stop()


def test_one_key_at_full_speed_is_refused_while_another_key_is_always_answered(server, world):
    outcome = fairness.run(server.port, POLITE_KEY, FLOOD_KEY, fairness.Traffic.of(world))

    assert {sample.status for sample in outcome.samples} == {200}
    # The flood ran at full speed: answered up to its key's rate, refused beyond it.
    assert outcome.flooded.get(200, 0) > 0 and outcome.flooded.get(429, 0) > 0
    # Its refusals were held: a connection waits at least half the hold for each (a timer, so
    # a slower machine only makes fewer), and 8 connections stay within the key's holds.
    hold = Settings.model_fields["serving_rate_limit_hold_s"].default
    flooding_s = fairness.PAIRS * fairness.WINDOW_S
    most = fairness.FLOOD_CONNECTIONS * (flooding_s / (hold / 2) + fairness.PAIRS)
    assert outcome.flooded[429] <= most
    assert outcome.reconnects == 0
    print(outcome.summary())  # shown with -rP
