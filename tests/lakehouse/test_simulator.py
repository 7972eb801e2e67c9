"""The simulator: determinism, reference-scale volumes and each fraud scenario's property."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraudops.settings import get_settings
from lakehouse.simulator import (
    SCENARIO_AMOUNT,
    SCENARIO_CARD_TESTING,
    SCENARIO_CUSTOMER,
    SCENARIO_TERMINAL,
    DriftScenario,
    Simulator,
    SimulatorConfig,
)

REFERENCE = SimulatorConfig.from_settings(get_settings())
SMALL = SimulatorConfig.from_settings(get_settings(), n_customers=300, n_terminals=600, n_days=20)


def _concat(sim: Simulator) -> tuple[pd.DataFrame, pd.DataFrame]:
    days = list(sim.days())
    tx = pa.concat_tables([d.transactions for d in days]).to_pandas()
    frauds = pa.concat_tables([d.frauds for d in days]).to_pandas()
    return tx, frauds


@pytest.fixture(scope="module")
def reference() -> tuple[Simulator, pd.DataFrame, pd.DataFrame]:
    """The whole reference-scale simulation (about 1.75 M rows, a couple of seconds)."""
    sim = Simulator(REFERENCE)
    tx, frauds = _concat(sim)
    return sim, tx, frauds


def test_same_seed_same_data_and_other_seed_other_data():
    a = Simulator(SMALL).simulate_day(dt.date(2018, 4, 10))
    b = Simulator(SMALL).simulate_day(dt.date(2018, 4, 10))
    c = Simulator(SimulatorConfig(**{**SMALL.__dict__, "seed": 7})).simulate_day(
        dt.date(2018, 4, 10)
    )
    assert a.transactions.equals(b.transactions)
    assert a.frauds.equals(b.frauds)
    assert not a.transactions.equals(c.transactions)


def test_a_day_does_not_depend_on_which_days_were_generated_before():
    in_sequence = list(Simulator(SMALL).days(dt.date(2018, 4, 1), dt.date(2018, 4, 15)))[-1]
    alone = Simulator(SMALL).simulate_day(dt.date(2018, 4, 15))
    assert in_sequence.transactions.equals(alone.transactions)


def test_transactions_stay_inside_their_day_and_ids_are_unique():
    tx, _ = _concat(Simulator(SMALL))
    assert tx["transaction_id"].is_unique
    days = tx["tx_datetime"].dt.date
    assert days.min() == SMALL.start_date and days.max() == SMALL.end_date
    assert (tx["tx_amount"] >= 0).all()
    assert np.allclose(tx["tx_amount"], tx["tx_amount"].round(2))


def test_customers_only_use_terminals_within_the_radius():
    sim = Simulator(SMALL)
    tx = sim.simulate_day(dt.date(2018, 4, 3)).transactions.to_pandas()
    cust = sim.customers().to_pandas().set_index("customer_id")
    term = sim.terminals().to_pandas().set_index("terminal_id")
    c = cust.loc[tx["customer_id"], ["x_location", "y_location"]].to_numpy()
    t = term.loc[tx["terminal_id"], ["x_location", "y_location"]].to_numpy()
    assert (np.hypot(*(c - t).T) < SMALL.radius).all()


def test_reference_scale_volume_and_fraud_rate(reference):
    _, tx, frauds = reference
    assert 1_650_000 <= len(tx) <= 1_850_000
    assert 0.006 <= len(frauds) / len(tx) <= 0.010


def test_every_amount_above_220_is_fraud(reference):
    _, tx, frauds = reference
    big = tx.loc[tx["tx_amount"] > 220, "transaction_id"]
    assert len(big) > 100
    assert big.isin(frauds["transaction_id"]).all()
    assert (frauds["fraud_scenario"] == SCENARIO_AMOUNT).any()


def test_compromised_terminal_frauds_cluster_on_few_terminals_for_28_days(reference):
    sim, tx, frauds = reference
    terminal = frauds[frauds["fraud_scenario"] == SCENARIO_TERMINAL].copy()
    terminal["day"] = terminal["tx_datetime"].dt.floor("D")
    span = terminal.groupby("terminal_id")["day"].agg(lambda d: (d.max() - d.min()).days)
    # 2 terminals a day over 183 days: at most 366 terminals, each active for at most 28 days
    # unless drawn twice (rare).
    assert span.size <= 2 * sim.config.n_days
    assert (span <= 27).mean() > 0.95
    # While compromised, every transaction at such a terminal is fraudulent.
    first = terminal.groupby("terminal_id")["tx_datetime"].min()
    t_id = first.index[0]
    window = tx[
        (tx["terminal_id"] == t_id)
        & (tx["tx_datetime"] >= first.iloc[0].floor("D"))
        & (tx["tx_datetime"] < first.iloc[0].floor("D") + pd.Timedelta(days=28))
    ]
    assert window["transaction_id"].isin(frauds["transaction_id"]).all()


def test_compromised_customer_frauds_are_about_five_times_the_mean(reference):
    sim, _, frauds = reference
    means = sim.customers().to_pandas().set_index("customer_id")["mean_amount"]
    customer = frauds[frauds["fraud_scenario"] == SCENARIO_CUSTOMER]
    tx = pa.concat_tables(
        [
            d.transactions
            for d in sim.days(sim.config.start_date, sim.config.start_date + dt.timedelta(days=40))
        ]
    ).to_pandas()
    amounts = tx.set_index("transaction_id")["tx_amount"]
    customer = customer[customer["transaction_id"].isin(amounts.index)]
    ratio = (
        amounts.loc[customer["transaction_id"]].to_numpy()
        / means.loc[customer["customer_id"]].to_numpy()
    )
    assert len(customer) > 20
    assert 3.5 <= np.median(ratio) <= 6.5


def test_reports_become_known_exactly_after_the_label_delay():
    day = Simulator(SMALL).simulate_day(dt.date(2018, 4, 12))
    frauds = day.frauds.to_pandas()
    delay = pd.Timedelta(days=SMALL.label_delay_days)
    assert len(frauds) > 0
    assert ((frauds["reported_at"] - frauds["tx_datetime"]) == delay).all()


def test_spending_shift_raises_amounts_from_its_start():
    start = dt.date(2018, 4, 10)
    shifted = SimulatorConfig(
        **{**SMALL.__dict__, "drifts": (DriftScenario("spending_shift", start, intensity=0.5),)}
    )
    before = Simulator(shifted).simulate_day(dt.date(2018, 4, 9)).transactions
    plain_after = Simulator(SMALL).simulate_day(dt.date(2018, 4, 11)).transactions.to_pandas()
    after = Simulator(shifted).simulate_day(dt.date(2018, 4, 11)).transactions.to_pandas()
    assert before.equals(Simulator(SMALL).simulate_day(dt.date(2018, 4, 9)).transactions)
    assert after["tx_amount"].median() == pytest.approx(
        1.5 * plain_after["tx_amount"].median(), rel=0.05
    )


def test_new_fraud_pattern_adds_small_night_time_frauds():
    start = dt.date(2018, 4, 5)
    cfg = SimulatorConfig(
        **{**SMALL.__dict__, "drifts": (DriftScenario("new_fraud_pattern", start, intensity=10),)}
    )
    day = Simulator(cfg).simulate_day(dt.date(2018, 4, 6))
    frauds = day.frauds.to_pandas()
    tx = day.transactions.to_pandas().set_index("transaction_id")
    testing = frauds[frauds["fraud_scenario"] == SCENARIO_CARD_TESTING]
    assert len(testing) >= 3
    assert (tx.loc[testing["transaction_id"], "tx_amount"] <= 5).all()
    assert (testing["tx_datetime"].dt.hour < 6).all()
    assert not (
        Simulator(cfg).simulate_day(dt.date(2018, 4, 4)).frauds.to_pandas()["fraud_scenario"]
        == SCENARIO_CARD_TESTING
    ).any()


@pytest.mark.parametrize("variant", ["null_amount", "amount_in_cents"])
def test_broken_upstream_field(variant):
    start = dt.date(2018, 4, 5)
    cfg = SimulatorConfig(
        **{
            **SMALL.__dict__,
            "drifts": (DriftScenario("broken_field", start, intensity=0.2, variant=variant),),
        }
    )
    broken = Simulator(cfg).simulate_day(dt.date(2018, 4, 6)).transactions.to_pandas()
    clean = Simulator(SMALL).simulate_day(dt.date(2018, 4, 6)).transactions.to_pandas()
    if variant == "null_amount":
        assert 0.1 < broken["tx_amount"].isna().mean() < 0.3
    else:
        assert np.allclose(broken["tx_amount"], (clean["tx_amount"] * 100).round(0))


def test_drifts_from_the_environment_reach_the_simulator(monkeypatch):
    monkeypatch.setenv(
        "FRAUDOPS_SIM_DRIFTS",
        '[{"kind": "spending_shift", "start": "2018-04-10", "intensity": 0.5}]',
    )
    config = SimulatorConfig.from_settings(get_settings())
    assert config.drifts == (DriftScenario("spending_shift", dt.date(2018, 4, 10), intensity=0.5),)
    # The round trip through a subprocess's environment keeps them.
    from fraudops.environ import settings_env

    env = settings_env(get_settings())
    monkeypatch.setenv("FRAUDOPS_SIM_DRIFTS", env["FRAUDOPS_SIM_DRIFTS"])
    assert SimulatorConfig.from_settings(get_settings()).drifts == config.drifts
