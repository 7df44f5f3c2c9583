"""``margin-monitor demo`` talks while it plays (issue 12): what the scenario will show, a
progress line per step with the time left, and for a scenario that sends nothing, why. Run
as the user runs it, the installed console script in a subprocess, bounded in time and fast
(``--speed``); stdin is not a terminal, so the demo ends with its scenario."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import margin_monitor

from monitor.demo import progress_line, scenario_rules
from monitor.sim.scenarios import ScenarioError, builtin_scenarios, load_scenario
from rules import RulesConfig
from rules.checks.allocation_drift import AllocationDriftConfig

SCENARIOS = Path(__file__).resolve().parents[2] / "monitor" / "sim" / "scenarios"


def demo(*args: str, home: Path) -> str:
    """The demo's standard output (exit 0 asserted); no user configuration is read."""
    done = margin_monitor("demo", *args, env={"HOME": str(home)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.mark.slow
def test_a_quiet_scenario_says_what_it_shows_and_reports_progress(tmp_path):
    """healthy at 5x (40 scenario s in 8 s): the expectation first, one line per step with the
    time left ((40 - 10) / 5 = 6 s, then 4 s and 2 s), and at the end why nothing was sent."""
    out = demo("--scenario", "healthy", "--speed", "5", home=tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("Simulated IB Gateway on 127.0.0.1:")
    assert "playing 'healthy' at 5x for 8 s: Two healthy accounts with gentle price drift" in out
    assert "What to expect: no alerts, on purpose: both accounts stay far from every level" in out
    progress = [line for line in lines if line.startswith("-- [")]
    assert progress == [
        "-- [0:10 of 0:40] quiet uptick; 6 s left",
        "-- [0:20 of 0:40] small dip; 4 s left",
        "-- [0:30 of 0:40] flat close; 2 s left",
    ]
    assert "Demo finished: 0 notifications sent" in out
    assert "No alerts were sent. What this scenario shows: no alerts, on purpose" in out


@pytest.mark.slow
def test_three_fund_alerts_with_the_scenarios_targets_between_progress_lines(tmp_path):
    """three_fund's targets come from its demo_rules: the drift warning arrives (before the
    first step at 0:10), then the progress lines."""
    out = demo("--scenario", "three_fund", "--speed", "6", home=tmp_path)
    assert "What to expect: an allocation_drift warning within seconds" in out
    warning = out.index("[WARNING] DU5000001 allocation_drift")
    first_step = out.index("-- [0:10 of 0:30] large caps rally; 3 s left")
    assert warning < first_step
    assert "Sell USD 19,989.00 VOO; buy USD 2,483.00 BND; buy USD 17,506.00 SCHD" in out
    assert "-- [0:20 of 0:30] some giveback; 2 s left" in out
    assert "Demo finished: 1 notifications sent" in out
    assert "No alerts were sent" not in out


def test_every_listed_scenario_says_what_the_demo_shows():
    """Each built-in scenario has an ``expect`` line; one that sends nothing says why."""
    for name in builtin_scenarios():
        scenario = load_scenario(name)
        assert len(scenario.expect) > 30, name
    assert load_scenario("healthy").expect.startswith("no alerts, on purpose")


def test_demo_rules_fill_only_what_the_configuration_leaves_at_its_defaults():
    scenario = load_scenario("three_fund")
    targets = {"SCHD": 0.4, "VOO": 0.4, "BND": 0.2}
    assert scenario_rules(RulesConfig(), scenario).allocation_drift.targets == targets
    own = RulesConfig(allocation_drift=AllocationDriftConfig(targets={"VOO": 0.6, "BND": 0.4}))
    assert scenario_rules(own, scenario).allocation_drift.targets == {"VOO": 0.6, "BND": 0.4}
    assert scenario_rules(RulesConfig(), load_scenario("healthy")) == RulesConfig()


@pytest.mark.slow
def test_invalid_demo_rules_are_one_line_naming_the_key(tmp_path):
    text = (SCENARIOS / "three_fund.toml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace("BND = 0.20 }", "BND = 0.90 }"), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"demo_rules\.allocation_drift"):
        scenario_rules(RulesConfig(), load_scenario(broken))
    done = margin_monitor("demo", "--scenario", str(broken), env={"HOME": str(tmp_path)})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "demo_rules.allocation_drift" in line


def test_a_progress_line_names_the_session_time_when_accelerated():
    """trading_day's first step at 600 scenario s of 23,400, at 600x: 38 s left."""
    scenario = load_scenario("trading_day")
    noon = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)  # 12:00 in New York (EDT)
    line = progress_line(scenario.steps[0], scenario, 600.0, lambda: noon)
    assert line == "-- [10:00 of 6:30:00, 12:00 New York] cushion 29.0%; 38 s left"
