"""A deterministic, vectorised simulator of a card-payment system (docs/lakehouse.md).

Every day is generated independently from ``(seed, day index)``, so any date range can be
produced incrementally and in any order with identical results. Transactions and fraud reports
are separate feeds: a report for a fraudulent transaction becomes visible ``label_delay_days``
after the transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa

from fraudops.contracts import AMOUNT_FRAUD_THRESHOLD
from fraudops.settings import Settings

SECONDS_PER_DAY = 86_400
TERMINALS_COMPROMISED_PER_DAY = 2
TERMINAL_COMPROMISE_DAYS = 28
CUSTOMERS_COMPROMISED_PER_DAY = 3
CUSTOMER_COMPROMISE_DAYS = 14
CUSTOMER_FRAUD_SHARE = 1 / 3
CUSTOMER_FRAUD_MULTIPLIER = 5.0

# Stream ids keep the random draws of different purposes independent of each other.
_PROFILES, _DAY, _TERMINAL_COMPROMISE, _CUSTOMER_COMPROMISE, _DRIFT = range(5)

SCENARIO_NONE = 0
SCENARIO_AMOUNT = 1
SCENARIO_TERMINAL = 2
SCENARIO_CUSTOMER = 3
SCENARIO_CARD_TESTING = 4

TRANSACTION_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("tx_datetime", pa.timestamp("us", tz="UTC")),
        ("customer_id", pa.int64()),
        ("terminal_id", pa.int64()),
        ("tx_amount", pa.float64()),
    ]
)
FRAUD_REPORT_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("customer_id", pa.int64()),
        ("terminal_id", pa.int64()),
        ("fraud_scenario", pa.int8()),
        ("reported_at", pa.timestamp("us", tz="UTC")),
    ]
)

DriftKind = Literal["new_fraud_pattern", "spending_shift", "broken_field"]


@dataclass(frozen=True)
class DriftScenario:
    """A change in the source system from ``start`` (inclusive) to ``end`` (inclusive or open).

    - ``new_fraud_pattern``: card testing; each day ``intensity`` x 0.1 % of customers make
      bursts of 3 to 6 small night-time transactions, all fraudulent (scenario 4).
    - ``spending_shift``: every amount is multiplied by ``1 + intensity``.
    - ``broken_field``: an upstream bug; ``variant`` ``null_amount`` nulls the amount of an
      ``intensity`` share of rows, ``amount_in_cents`` reports every amount in cents.
    """

    kind: DriftKind
    start: dt.date
    end: dt.date | None = None
    intensity: float = 1.0
    variant: Literal["null_amount", "amount_in_cents"] = "null_amount"

    def active(self, day: dt.date) -> bool:
        """Whether the scenario applies on ``day``."""
        return day >= self.start and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of the simulated source system (the reference scale lives in the settings)."""

    n_customers: int
    n_terminals: int
    start_date: dt.date
    n_days: int
    radius: float
    seed: int
    label_delay_days: int
    drifts: tuple[DriftScenario, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SimulatorConfig:
        """The configuration the settings describe, with optional field overrides."""
        values: dict[str, object] = {
            "n_customers": settings.sim_customers,
            "n_terminals": settings.sim_terminals,
            "start_date": settings.sim_start_date,
            "n_days": settings.sim_days,
            "radius": settings.sim_radius,
            "seed": settings.sim_seed,
            "label_delay_days": settings.label_delay_days,
            "drifts": tuple(DriftScenario(**drift.model_dump()) for drift in settings.sim_drifts),
        }
        return cls(**(values | overrides))

    @property
    def end_date(self) -> dt.date:
        """Last simulated day (inclusive)."""
        return self.start_date + dt.timedelta(days=self.n_days - 1)


@dataclass(frozen=True)
class SimulatedDay:
    """One day of the source system: the transaction feed and the ground truth of its frauds."""

    day: dt.date
    transactions: pa.Table
    frauds: pa.Table

    @property
    def fraud_reports(self) -> pa.Table:
        """Reports for this day's frauds, stamped with the time they become known."""
        return self.frauds.select(FRAUD_REPORT_SCHEMA.names)


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


class Simulator:
    """Generates the customers, terminals and daily feeds of the card-payment system."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._pick_cache: dict[tuple[int, int], np.ndarray] = {}

    # ---- static profiles --------------------------------------------------------------------
    @cached_property
    def _profiles(self) -> dict[str, np.ndarray]:
        cfg = self.config
        rng = _rng(cfg.seed, _PROFILES)
        customer_xy = rng.uniform(0, 100, size=(cfg.n_customers, 2))
        mean_amount = rng.uniform(5, 100, size=cfg.n_customers)
        mean_nb_tx = rng.uniform(0, 4, size=cfg.n_customers)
        terminal_xy = rng.uniform(0, 100, size=(cfg.n_terminals, 2))
        return {
            "customer_xy": customer_xy,
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2,
            "mean_nb_tx": mean_nb_tx,
            "terminal_xy": terminal_xy,
        }

    @cached_property
    def _available_terminals(self) -> tuple[np.ndarray, np.ndarray]:
        """Terminals within ``radius`` of each customer, as CSR (offsets, terminal indices).

        Terminals are bucketed on a grid of cell size ``radius``, so each customer is compared
        only with the terminals of its own and the 8 neighbouring cells.
        """
        p = self._profiles
        cxy, txy = p["customer_xy"], p["terminal_xy"]
        r = self.config.radius
        n_cells = max(1, int(np.ceil(100 / r)))
        t_cell = np.minimum((txy // r).astype(np.int64), n_cells - 1)
        c_cell = np.minimum((cxy // r).astype(np.int64), n_cells - 1)
        t_key = t_cell[:, 0] * n_cells + t_cell[:, 1]
        t_order = np.argsort(t_key, kind="stable")
        t_bounds = np.searchsorted(t_key[t_order], np.arange(n_cells * n_cells + 1))
        c_key = c_cell[:, 0] * n_cells + c_cell[:, 1]
        c_order = np.argsort(c_key, kind="stable")
        c_bounds = np.searchsorted(c_key[c_order], np.arange(n_cells * n_cells + 1))
        rows, cols = [], []
        for cell in np.flatnonzero(np.diff(c_bounds)):
            gx, gy = divmod(int(cell), n_cells)
            neighbours = [
                t_order[t_bounds[k] : t_bounds[k + 1]]
                for x in range(max(gx - 1, 0), min(gx + 2, n_cells))
                for y in range(max(gy - 1, 0), min(gy + 2, n_cells))
                for k in (x * n_cells + y,)
            ]
            tidx = np.concatenate(neighbours)
            cidx = c_order[c_bounds[cell] : c_bounds[cell + 1]]
            d2 = ((cxy[cidx, None, :] - txy[None, tidx, :]) ** 2).sum(axis=2)
            ri, ci = np.nonzero(d2 < r * r)
            rows.append(cidx[ri])
            cols.append(tidx[ci])
        row = np.concatenate(rows) if rows else np.empty(0, np.int64)
        col = np.concatenate(cols) if cols else np.empty(0, np.int64)
        order = np.lexsort((col, row))
        counts = np.bincount(row, minlength=self.config.n_customers)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return offsets, col[order].astype(np.int64)

    def customers(self) -> pa.Table:
        """Customer master data (id, location, spending profile)."""
        p = self._profiles
        offsets, _ = self._available_terminals
        return pa.table(
            {
                "customer_id": np.arange(1, self.config.n_customers + 1, dtype=np.int64),
                "x_location": p["customer_xy"][:, 0],
                "y_location": p["customer_xy"][:, 1],
                "mean_amount": p["mean_amount"],
                "std_amount": p["std_amount"],
                "mean_nb_tx_per_day": p["mean_nb_tx"],
                "nb_available_terminals": np.diff(offsets).astype(np.int64),
            }
        )

    def terminals(self) -> pa.Table:
        """Terminal master data (id, location)."""
        txy = self._profiles["terminal_xy"]
        return pa.table(
            {
                "terminal_id": np.arange(1, self.config.n_terminals + 1, dtype=np.int64),
                "x_location": txy[:, 0],
                "y_location": txy[:, 1],
            }
        )

    # ---- compromises ------------------------------------------------------------------------
    def compromised_terminals(self, day_index: int) -> np.ndarray:
        """Indices (0-based) of terminals whose transactions are all fraudulent on ``day_index``."""
        first = max(0, day_index - TERMINAL_COMPROMISE_DAYS + 1)
        return self._compromised(
            _TERMINAL_COMPROMISE,
            range(first, day_index + 1),
            self.config.n_terminals,
            TERMINALS_COMPROMISED_PER_DAY,
        )

    def compromised_customers(self, day_index: int) -> np.ndarray:
        """Indices (0-based) of customers with some fraudulent, inflated transactions that day."""
        first = max(0, day_index - CUSTOMER_COMPROMISE_DAYS + 1)
        return self._compromised(
            _CUSTOMER_COMPROMISE,
            range(first, day_index + 1),
            self.config.n_customers,
            CUSTOMERS_COMPROMISED_PER_DAY,
        )

    def _compromised(self, stream: int, days: range, population: int, k: int) -> np.ndarray:
        picks = [self._daily_pick(stream, d, population, k) for d in days]
        return np.unique(np.concatenate(picks)) if picks else np.empty(0, np.int64)

    def _daily_pick(self, stream: int, day_index: int, population: int, k: int) -> np.ndarray:
        # Each day's pick is reused by the next 14 or 28 days: draw it once.
        key = (stream, day_index)
        if key not in self._pick_cache:
            rng = _rng(self.config.seed, stream, day_index)
            self._pick_cache[key] = rng.choice(population, size=min(k, population), replace=False)
        return self._pick_cache[key]

    # ---- daily feed -------------------------------------------------------------------------
    def day_index(self, day: dt.date) -> int:
        """Index of ``day`` from the simulation start (0-based)."""
        return (day - self.config.start_date).days

    def simulate_day(self, day: dt.date) -> SimulatedDay:
        """Generate the transactions of ``day`` and the ground truth of their frauds."""
        cfg = self.config
        idx = self.day_index(day)
        if idx < 0:
            raise ValueError(f"{day} is before the simulation start {cfg.start_date}")
        p = self._profiles
        offsets, flat = self._available_terminals
        n_avail = np.diff(offsets)
        rng = _rng(cfg.seed, _DAY, idx)

        counts = rng.poisson(p["mean_nb_tx"])
        counts[n_avail == 0] = 0
        cust = np.repeat(np.arange(cfg.n_customers, dtype=np.int64), counts)
        seconds = rng.normal(SECONDS_PER_DAY / 2, 20_000, size=cust.size)
        inside = (seconds > 0) & (seconds < SECONDS_PER_DAY)
        cust, seconds = cust[inside], seconds[inside]
        mean, std = p["mean_amount"][cust], p["std_amount"][cust]
        amount = rng.normal(mean, std)
        negative = amount < 0
        amount[negative] = rng.uniform(0, 2 * mean[negative])
        pick = np.floor(rng.random(cust.size) * n_avail[cust]).astype(np.int64)
        term = flat[offsets[cust] + pick]
        fraud_share = rng.random(cust.size)

        scenario = np.zeros(cust.size, dtype=np.int8)
        for drift in cfg.drifts:
            if drift.active(day) and drift.kind == "spending_shift":
                amount = amount * (1 + drift.intensity)
        amount = np.round(amount, 2)
        scenario[amount > AMOUNT_FRAUD_THRESHOLD] = SCENARIO_AMOUNT
        scenario[np.isin(term, self.compromised_terminals(idx))] = SCENARIO_TERMINAL
        hit = np.isin(cust, self.compromised_customers(idx)) & (fraud_share < CUSTOMER_FRAUD_SHARE)
        amount[hit] = np.round(amount[hit] * CUSTOMER_FRAUD_MULTIPLIER, 2)
        scenario[hit] = SCENARIO_CUSTOMER

        cust, seconds, term, amount, scenario = self._apply_card_testing(
            day, idx, cust, seconds, term, amount, scenario
        )
        order = np.argsort(seconds)
        cust, seconds, term, amount, scenario = (
            a[order] for a in (cust, seconds, term, amount, scenario)
        )
        tx_us = _epoch_us(day) + (seconds * 1_000_000).astype(np.int64)
        # Ids are 1-based and day-prefixed, so they are unique across days generated apart.
        tx_ids = idx * 10_000_000 + np.arange(1, cust.size + 1, dtype=np.int64)
        cust, term = cust + 1, term + 1
        transactions = self._transactions_table(day, tx_ids, tx_us, cust, term, amount)

        is_fraud = scenario > 0
        delay_us = cfg.label_delay_days * SECONDS_PER_DAY * 1_000_000
        frauds = pa.table(
            {
                "transaction_id": tx_ids[is_fraud],
                "customer_id": cust[is_fraud],
                "terminal_id": term[is_fraud],
                "fraud_scenario": scenario[is_fraud],
                "reported_at": pa.array(tx_us[is_fraud] + delay_us, pa.timestamp("us", tz="UTC")),
                "tx_datetime": pa.array(tx_us[is_fraud], pa.timestamp("us", tz="UTC")),
            }
        )
        return SimulatedDay(day=day, transactions=transactions, frauds=frauds)

    def _apply_card_testing(self, day, idx, cust, seconds, term, amount, scenario):
        drifts = [d for d in self.config.drifts if d.kind == "new_fraud_pattern" and d.active(day)]
        if not drifts:
            return cust, seconds, term, amount, scenario
        rng = _rng(self.config.seed, _DRIFT, idx)
        offsets, flat = self._available_terminals
        n_avail = np.diff(offsets)
        eligible = np.flatnonzero(n_avail > 0)
        n_victims = max(1, round(drifts[0].intensity * 0.001 * self.config.n_customers))
        victims = rng.choice(eligible, size=min(n_victims, eligible.size), replace=False)
        burst = rng.integers(3, 7, size=victims.size)
        v_cust = np.repeat(victims, burst)
        v_term = flat[
            offsets[v_cust] + np.floor(rng.random(v_cust.size) * n_avail[v_cust]).astype(np.int64)
        ]
        v_seconds = rng.uniform(0, 6 * 3600, size=v_cust.size)
        v_amount = np.round(rng.uniform(1, 5, size=v_cust.size), 2)
        v_scenario = np.full(v_cust.size, SCENARIO_CARD_TESTING, dtype=np.int8)
        return (
            np.concatenate([cust, v_cust]),
            np.concatenate([seconds, v_seconds]),
            np.concatenate([term, v_term]),
            np.concatenate([amount, v_amount]),
            np.concatenate([scenario, v_scenario]),
        )

    def _transactions_table(self, day, tx_ids, tx_us, cust, term, amount) -> pa.Table:
        mask = None
        for drift in self.config.drifts:
            if drift.kind != "broken_field" or not drift.active(day):
                continue
            if drift.variant == "amount_in_cents":
                amount = np.round(amount * 100, 0)
            else:
                rng = _rng(self.config.seed, _DRIFT, 1_000_000 + self.day_index(day))
                mask = rng.random(amount.size) < drift.intensity
        return pa.table(
            {
                "transaction_id": tx_ids,
                "tx_datetime": pa.array(tx_us, pa.timestamp("us", tz="UTC")),
                "customer_id": cust,
                "terminal_id": term,
                "tx_amount": pa.array(amount, pa.float64(), mask=mask),
            },
            schema=TRANSACTION_SCHEMA,
        )

    def days(self, start: dt.date | None = None, end: dt.date | None = None):
        """Iterate over simulated days from ``start`` to ``end`` (inclusive)."""
        day = start or self.config.start_date
        last = end or self.config.end_date
        while day <= last:
            yield self.simulate_day(day)
            day += dt.timedelta(days=1)
