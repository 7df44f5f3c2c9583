"""``check`` as a Nagios/Icinga plugin, read back by a parser written to the Monitoring Plugins
development guidelines: the output grammar (first line ``TEXT | PERFDATA``, long text, more
performance data after a ``|`` on a later line), the performance-data grammar
(``'label'=value[UOM];[warn];[crit];[min];[max]``, labels quoted, quotes doubled, numbers of
the class ``[-0-9.]``) and the range semantics of warn and crit (``10`` alerts outside 0..10,
``10:`` below 10, ``~:10`` above 10, ``@10:20`` inside)."""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from support import write_config

from monitor.report import PerfDatum, account_report, plugin_output, report, unknown
from rules import RulesConfig, evaluate
from rules.checks.cushion import CushionConfig
from rules.checks.gross_leverage import GrossLeverageConfig
from rules.checks.leverage import LeverageConfig
from rules.model import EvaluationContext
from rules.samples import SAMPLE_TIME, sample_snapshot, stock

# -- a parser to the guidelines' grammar ---------------------------------------------------------

NUMBER = r"-?[0-9]*\.?[0-9]+"
UOM = r"(?:us|ms|s|%|B|KB|MB|TB|c)?"
RANGE = rf"@?(?:(?:~|{NUMBER})?:)?(?:{NUMBER})?"
LABEL = r"'(?:[^'=]|'')+'|[^'=\s]+"
ITEM = re.compile(
    rf"(?P<label>{LABEL})=(?P<value>{NUMBER})(?P<uom>{UOM})"
    rf"(?:;(?P<warn>{RANGE})(?:;(?P<crit>{RANGE})(?:;(?P<min>{NUMBER})?(?:;(?P<max>{NUMBER})?)?)?)?)?"
)


@dataclass(frozen=True)
class Perf:
    """One parsed performance-data item."""

    label: str
    value: float
    uom: str
    warn: str
    crit: str

    def alerts(self, which: str) -> bool:
        """True when ``which`` (``warn`` or ``crit``) is set and its range alerts on value."""
        text = getattr(self, which)
        return bool(text) and in_alert(text, self.value)


def in_alert(text: str, value: float) -> bool:
    """The guidelines' range semantics: alert outside start..end (inclusive), or inside it
    with a leading ``@``; ``start`` defaults to 0, ``~`` is minus infinity, an empty end is
    plus infinity."""
    inside = text.startswith("@")
    body = text.removeprefix("@")
    start, end = body.split(":", 1) if ":" in body else ("0", body)
    low = -math.inf if start == "~" else float(start or 0)
    high = math.inf if end == "" else float(end)
    assert low <= high, f"range {text} has start above end"
    outside = value < low or value > high
    return not outside if inside else outside


def parse_perfdata(text: str) -> list[Perf]:
    """Every item of a performance-data string; fails on anything that is not one."""
    items = []
    position = 0
    text = text.strip()
    while position < len(text):
        found = ITEM.match(text, position)
        assert found, f"not performance data at {text[position:]!r}"
        label = found["label"]
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        items.append(
            Perf(
                label, float(found["value"]), found["uom"], found["warn"] or "", found["crit"] or ""
            )
        )
        position = found.end()
        rest = text[position:]
        assert rest == "" or rest[0].isspace(), f"items run together at {rest!r}"
        position += len(rest) - len(rest.lstrip())
    return items


@dataclass
class PluginOutput:
    """A plugin's output split by the guidelines: the first line's text, the long text, and
    the performance data from the first line and from after the ``|`` of a later line."""

    text: str
    long_text: list[str]
    perfdata: list[Perf]


def parse_output(output: str) -> PluginOutput:
    lines = output.rstrip("\n").split("\n")
    text, _, perf = lines[0].partition("|")
    long_text: list[str] = []
    more: list[str] = []
    for line in lines[1:]:
        if more:
            more.append(line)
        elif "|" in line:
            before, _, after = line.partition("|")
            if before.strip():
                long_text.append(before)
            more.append(after)
        else:
            long_text.append(line)
    return PluginOutput(text.strip(), long_text, parse_perfdata(" ".join([perf, *more])))


def by_label(parsed: PluginOutput) -> dict[str, Perf]:
    return {item.label: item for item in parsed.perfdata}


# -- the plugin's output -------------------------------------------------------------------------


def two_accounts(config: RulesConfig | None = None) -> dict:
    """DU222: NLV 100,000, EL 8,500, cushion 8.5% (critical below 10%), long 150,000 (1.5x);
    DU333: NLV 100,000, EL 62,500 (cushion 62.5%), long 80,000 and short 230,000, so net
    -1.5x (net short) and gross 3.1x."""
    context = EvaluationContext(now=SAMPLE_TIME, last_update=SAMPLE_TIME - timedelta(minutes=1))
    breach = sample_snapshot(cushion=0.085, excess_liquidity=8_500.0)
    hedged = sample_snapshot(
        (stock("AAA", 80_000.0), stock("ZZZ", -230_000.0)),
        gross_position_value=310_000.0,
        cushion=0.625,
    )
    return report(
        [
            account_report("DU222", breach, evaluate(breach, context, config)),
            account_report("DU333", hedged, evaluate(hedged, context, config)),
        ]
    )


def test_a_breach_leads_the_first_line_and_every_figure_is_in_the_perfdata():
    """The critical cushion 8.5% < 10% opens the first line; each account gives cushion (%),
    net and gross leverage, EL and NLV, quoted labels; the ranges alert exactly where the
    rules do: 8.5% is below both cushion levels (20:, 10:), 62.5% is below neither; net
    -1.5x (net short) is inside -1.6..1.6; gross 3.1x is above the critical 2; EL 8,500 is
    above IBKR's line of 10% of a 37,500 maintenance (3,750)."""
    parsed = parse_output(plugin_output(two_accounts(), RulesConfig(), None))
    assert parsed.text.startswith("MARGIN CRITICAL - DU222 cushion 8.5% < 10%")
    perf = by_label(parsed)
    assert set(perf) == {
        f"{account} {figure}"
        for account in ("DU222", "DU333")
        for figure in ("cushion", "net leverage", "gross leverage", "EL", "NLV")
    }
    cushion = perf["DU222 cushion"]
    assert (cushion.value, cushion.uom, cushion.warn, cushion.crit) == (8.5, "%", "20:", "10:")
    assert cushion.alerts("warn") and cushion.alerts("crit")
    assert not perf["DU333 cushion"].alerts("warn")
    net = perf["DU333 net leverage"]
    assert net.value == -1.5 and net.uom == ""
    assert not net.alerts("warn") and not net.alerts("crit")
    gross = perf["DU333 gross leverage"]
    assert gross.value == 3.1 and gross.alerts("crit") and not gross.warn
    el = perf["DU222 EL"]
    assert (el.value, el.crit) == (8_500.0, "3750:") and not el.alerts("crit")
    assert perf["DU222 NLV"].value == 100_000.0


def test_the_ranges_follow_the_configured_levels():
    """With cushion levels 25%/15%, net 1.4x/1.8x and a gross warning at 1.75x: the ranges are
    25:, 15:, -1.4:1.4, -1.8:1.8 and 1.75; the net short -1.5x alerts the warning band only."""
    config = RulesConfig(
        cushion=CushionConfig(warning=0.25, critical=0.15),
        leverage=LeverageConfig(warning=1.4, critical=1.8),
        gross_leverage=GrossLeverageConfig(warning=1.75),
    )
    perf = by_label(parse_output(plugin_output(two_accounts(config), config, None)))
    assert (perf["DU333 cushion"].warn, perf["DU333 cushion"].crit) == ("25:", "15:")
    net = perf["DU333 net leverage"]
    assert (net.warn, net.crit) == ("-1.4:1.4", "-1.8:1.8")
    assert net.alerts("warn") and not net.alerts("crit")
    assert perf["DU333 gross leverage"].warn == "1.75"


@pytest.mark.parametrize("width", [50, 64, 80, 132])
def test_no_line_is_wider_than_the_terminal(width):
    """At any width the lines fit (a single performance-data item may not be cut: it then
    has a line of its own), and the parser reads the same performance data and the same
    details as from the one-long-line form of ``--wide``."""
    result = two_accounts()
    wide = parse_output(plugin_output(result, RulesConfig(), None))
    output = plugin_output(result, RulesConfig(), width)
    for line in output.splitlines():
        alone = len(line.removeprefix("| ").split()) == 1
        assert len(line) <= width or alone, (width, line)
    narrow = parse_output(output)
    assert narrow.perfdata == wide.perfdata
    assert " ".join(" ".join(narrow.long_text).split()) == " ".join(
        " ".join(wide.long_text).split()
    )
    assert narrow.text.startswith("MARGIN CRITICAL - DU222 cushion")


def test_unknown_has_no_perfdata_and_a_pipe_in_a_message_cannot_forge_any():
    """Nothing judged: UNKNOWN with the reason and no performance data. A ``|`` inside a
    message is shown as ``¦``, so it never starts performance data."""
    parsed = parse_output(
        plugin_output(unknown("gateway at 127.0.0.1:9 refused"), RulesConfig(), 80)
    )
    assert parsed.text == "MARGIN UNKNOWN - gateway at 127.0.0.1:9 refused"
    assert parsed.perfdata == []
    forged = unknown("odd | 'x'=1;2;3")
    output = plugin_output(forged, RulesConfig(), 80)
    assert "|" not in output and parse_output(output).perfdata == []


def test_a_label_with_a_quote_doubles_it():
    """The guidelines' quoting: a label in single quotes, a quote inside it doubled."""
    datum = PerfDatum("it's DU1 cushion", 12.345, "%", "20:", "10:")
    assert str(datum) == "'it''s DU1 cushion'=12.35%;20:;10:"
    (parsed,) = parse_perfdata(str(datum))
    assert parsed.label == "it's DU1 cushion" and parsed.value == 12.35


# -- the real console script against the simulated gateway ---------------------------------------


async def run_check(*args: str, columns: int = 80) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARGIN_MONITOR_")}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("margin-monitor")),
        "check",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**environ, "COLUMNS": str(columns)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
def test_check_on_the_simulated_gateway_is_a_plugin(simulated_gateway, tmp_path):
    """The console script against the simulated gateway's sell-off after a 32% fall: exit 2,
    a first line ``MARGIN CRITICAL - ...``, no line wider than the 72 columns of the
    terminal, performance data for both accounts whose cushion ranges alert; nothing on
    stderr (the plugin's logs stay quiet unless -v)."""

    async def scenario() -> tuple[int, str, str]:
        async with simulated_gateway("selloff") as gateway:
            gateway.move_prices({"all": -0.32})
            config = write_config(tmp_path, gateway.port, [])
            return await run_check("--config", str(config), columns=72)

    status, out, err = asyncio.run(scenario())
    assert status == 2, (out, err)
    assert err == ""
    assert all(
        len(line) <= 72 or len(line.removeprefix("| ").split()) == 1 for line in out.splitlines()
    )
    parsed = parse_output(out)
    assert parsed.text.startswith("MARGIN CRITICAL - ")
    perf = by_label(parsed)
    assert {label.split()[0] for label in perf} == {"DU1000001", "DU1000002"}
    critical = [
        item for item in perf.values() if item.label.endswith("cushion") and item.alerts("crit")
    ]
    assert critical, perf


@pytest.mark.slow
def test_a_gateway_that_never_answers_is_unknown_at_the_timeout(tmp_path):
    """A port that accepts the connection and then says nothing: ``check -t 1`` gives up at
    one second with UNKNOWN (exit 3) naming the timeout, instead of waiting out [ib] timeout
    (30 s here)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever answers
        config = write_config(tmp_path, silent.getsockname()[1], [], ib={"timeout": 30})
        status, out, _ = asyncio.run(run_check("-t", "1", "--config", str(config)))
    assert status == 3
    assert out.startswith("MARGIN UNKNOWN - no answer within 1 s (-t/--timeout)")
