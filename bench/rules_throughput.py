"""Benchmark: the whole rules catalog on big books.

Targets (issue 6): ``rules.evaluate`` (every rule) on one account of 5,000 positions in
under 20 ms, and on 50 accounts of 200 positions (one evaluation cycle) in under 50 ms. Also
shown, for information: the estimate (``monitor.estimate``) of the 5,000-position account,
which runs before the rules on every streamed price between IB's pushes.

Run from the repository root::

    .venv/bin/python bench/rules_throughput.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from _common import machine, median, percentile, verdict

from monitor.estimate import estimate, make_baseline, rate_lookup
from rules import RULES, RulesConfig, evaluate, leveraged_factors
from rules.checks.allocation_drift import AllocationDriftConfig
from rules.checks.financing_cost import FinancingCostConfig
from rules.model import AccountSnapshot, EvaluationContext
from rules.samples import SAMPLE_TIME, synthetic_snapshot

TARGET_ONE_MS = 20.0
TARGET_CYCLE_MS = 50.0


def catalog_config() -> RulesConfig:
    """Every rule enabled and with work to do (drift targets, a financing benchmark)."""
    return RulesConfig(
        financing_cost=FinancingCostConfig(benchmark_rate=0.0433),
        allocation_drift=AllocationDriftConfig(targets={"SCHD": 0.4, "VOO": 0.4, "BND": 0.2}),
    )


def context(snapshot: AccountSnapshot) -> EvaluationContext:
    """A connected monitor with history: peak, last year's cost, shares outstanding."""
    return EvaluationContext(
        now=SAMPLE_TIME,
        peak_net_liquidation=(snapshot.net_liquidation or 0.0) * 1.05,
        financing_cost_year_ago=1_000.0,
        shares_outstanding={p.symbol: 5e8 for p in snapshot.positions[:500]},
        last_update=SAMPLE_TIME - timedelta(seconds=30),
    )


def timed(work: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds per call of ``work`` over ``repeats`` calls (after two warm-up calls)."""
    work()
    work()
    times = []
    gc.collect()
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(label: str, times: list[float], target: float | None) -> bool:
    """Print median/p95 (and the target verdict); True when the target is met."""
    mid, p95 = median(times), percentile(times, 0.95)
    line = f"{label:<44} median {mid:7.2f} ms   p95 {p95:7.2f} ms   (n={len(times)})"
    met = target is None or mid < target
    if target is not None:
        line += f"   target < {target:g} ms: {verdict(met)}"
    print(line)
    return met


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per case")
    args = parser.parse_args(argv)
    config = catalog_config()

    big = synthetic_snapshot(5_000)
    big_context = context(big)
    findings = evaluate(big, big_context, config)
    assert [f.rule for f in findings] == list(RULES), "every rule ran"
    failed = [f.rule for f in findings if "failed" in f.message]
    if failed:
        print(f"error: rules raised on the sample book: {failed}", file=sys.stderr)
        return 1

    accounts = [replace(synthetic_snapshot(200), account=f"DU{index:07d}") for index in range(50)]
    contexts = [context(snapshot) for snapshot in accounts]

    def one_cycle() -> None:
        for snapshot, ctx in zip(accounts, contexts, strict=True):
            evaluate(snapshot, ctx, config)

    baseline = make_baseline(big, rate_lookup({}, leveraged_factors()))
    moved = replace(
        big,
        positions=tuple(
            replace(p, market_value_base=(p.market_value_base or 0.0) * 0.97) for p in big.positions
        ),
    )

    print(f"rules_throughput: the whole catalog (rules.evaluate, {len(RULES)} rules)")
    print(f"machine: {machine()}")
    ok_one = report(
        "1 account x 5,000 positions",
        timed(lambda: evaluate(big, big_context, config), args.repeats),
        TARGET_ONE_MS,
    )
    ok_cycle = report(
        "50 accounts x 200 positions (one cycle)", timed(one_cycle, args.repeats), TARGET_CYCLE_MS
    )
    report(
        "estimate of 5,000 positions (information)",
        timed(lambda: estimate(baseline, moved), args.repeats),
        None,
    )
    print(f"all targets met: {'yes' if ok_one and ok_cycle else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
