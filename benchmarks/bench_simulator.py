"""Simulator throughput at the reference scale vs a straightforward per-customer Python loop.

Target: >= 20x the loop's rows/s, and the whole reference generation <= 20 s on 2 cores.
"""

from __future__ import annotations

import datetime as dt
import random

import numpy as np

from benchmarks.common import median_time, write_figures
from fraudops.contracts import AMOUNT_FRAUD_THRESHOLD
from fraudops.settings import get_settings
from lakehouse.simulator import Simulator, SimulatorConfig

LOOP_SCALE = {"n_customers": 500, "n_terminals": 1_000, "n_days": 30}


def loop_simulation(cfg: SimulatorConfig) -> int:
    """The same rules the plain way: a Python iteration per customer, day and transaction."""
    rng = random.Random(cfg.seed)
    customers = [
        (rng.uniform(0, 100), rng.uniform(0, 100), m, m / 2, rng.uniform(0, 4))
        for m in (rng.uniform(5, 100) for _ in range(cfg.n_customers))
    ]
    terminals = [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(cfg.n_terminals)]
    available = [
        [
            t
            for t, (tx, ty) in enumerate(terminals)
            if (cx - tx) ** 2 + (cy - ty) ** 2 < cfg.radius**2
        ]
        for cx, cy, *_ in customers
    ]
    np_rng = np.random.default_rng(cfg.seed)
    rows = []
    for day in range(cfg.n_days):
        for c, (_, _, mean, std, per_day) in enumerate(customers):
            if not available[c]:
                continue
            for _ in range(np_rng.poisson(per_day)):
                seconds = rng.gauss(43_200, 20_000)
                if not 0 < seconds < 86_400:
                    continue
                amount = rng.gauss(mean, std)
                if amount < 0:
                    amount = rng.uniform(0, 2 * mean)
                rows.append([day, seconds, c, rng.choice(available[c]), round(amount, 2), 0])
    compromised_t = {}
    compromised_c = {}
    for day in range(cfg.n_days):
        for t in rng.sample(range(cfg.n_terminals), 2):
            compromised_t.setdefault(t, []).append(day)
        for c in rng.sample(range(cfg.n_customers), 3):
            compromised_c.setdefault(c, []).append(day)
    for row in rows:
        day, _, c, t, amount, _ = row
        if amount > AMOUNT_FRAUD_THRESHOLD:
            row[5] = 1
        if any(d <= day < d + 28 for d in compromised_t.get(t, ())):
            row[5] = 2
        if any(d <= day < d + 14 for d in compromised_c.get(c, ())) and rng.random() < 1 / 3:
            row[4] = round(amount * 5, 2)
            row[5] = 3
    return len(rows)


def vectorised(cfg: SimulatorConfig) -> int:
    """Rows produced by the real simulator for ``cfg`` (profiles included in the time)."""
    return sum(day.transactions.num_rows for day in Simulator(cfg).days())


def main() -> dict:
    """Measure both implementations and print rows/s and their ratio."""
    reference = SimulatorConfig.from_settings(get_settings())
    loop_scale = SimulatorConfig.from_settings(get_settings(), **LOOP_SCALE)
    ref_time, ref_rows = median_time(lambda: vectorised(reference), repeat=3)
    small_time, small_rows = median_time(lambda: vectorised(loop_scale), repeat=3)
    loop_time, loop_rows = median_time(lambda: loop_simulation(loop_scale), repeat=1)
    figures = {
        "reference_scale": {
            "customers": reference.n_customers,
            "terminals": reference.n_terminals,
            "days": reference.n_days,
        },
        "reference_rows": ref_rows,
        "reference_seconds_median": round(ref_time, 3),
        "reference_rows_per_s": round(ref_rows / ref_time),
        "loop_scale": {
            "customers": loop_scale.n_customers,
            "terminals": loop_scale.n_terminals,
            "days": loop_scale.n_days,
        },
        "loop_rows": loop_rows,
        "loop_seconds": round(loop_time, 3),
        "loop_rows_per_s": round(loop_rows / loop_time),
        "vectorised_small_rows_per_s": round(small_rows / small_time),
        "speedup_reference_vs_loop": round((ref_rows / ref_time) / (loop_rows / loop_time), 1),
        "speedup_same_scale": round((small_rows / small_time) / (loop_rows / loop_time), 1),
        "target": "speedup >= 20x, reference generation <= 20 s",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    print(
        f"simulator: {ref_rows:,} rows in {ref_time:.2f} s (median of 3) = "
        f"{figures['reference_rows_per_s']:,} rows/s\n"
        f"python loop baseline ({loop_scale.n_customers} customers, {loop_scale.n_days} days): "
        f"{loop_rows:,} rows in {loop_time:.2f} s = {figures['loop_rows_per_s']:,} rows/s\n"
        f"speed-up: {figures['speedup_reference_vs_loop']}x (reference vs loop), "
        f"{figures['speedup_same_scale']}x at the same small scale"
    )
    write_figures("simulator", figures)
    return figures


if __name__ == "__main__":
    main()
