"""The history keeps each minute's worst moment (schema v4), and a v3 file is migrated in place.

Hand-worked figures: within one minute the cushion goes 30.0% -> 8.7% -> 24.6% and gross
leverage 1.50x -> 2.40x -> 1.90x; the row's last values are 24.6% and 1.90x, its minimum
cushion 8.7% and its maximum leverage 2.40x.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import margin_monitor

from monitor.store import _MIGRATIONS, SCHEMA_VERSION, Store, _split_sql, worst_in_minute
from monitor.summary import Sample, chart_figure, render_chart, render_lines, summarize, to_sample
from monitor.webchart import ChartPoint, Panel, day_chart_svg, line_breaks

T0 = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)
MINUTE = [(0.300, 1.50, 1.20), (0.087, 2.40, 2.10), (0.246, 1.90, 1.60)]  # cushion, gross, net


def record_minute(store: Store, account: str = "DU1", start: datetime = T0) -> None:
    """Three evaluations 20 s apart inside one minute."""
    for index, (cushion, gross, net) in enumerate(MINUTE):
        store.record_sample(
            account,
            start + timedelta(seconds=20 * index),
            {
                "net_liquidation": 100_000.0 - 10_000 * index,
                "cushion": cushion,
                "leverage": gross,
                "extra": {"net_leverage": net},
            },
        )


def test_a_minute_keeps_its_last_lowest_and_highest_values(tmp_path):
    with Store(tmp_path / "state.sqlite3") as store:
        record_minute(store)
        (row,) = store.samples("DU1", T0, T0 + timedelta(minutes=1))
    assert (row["cushion"], row["cushion_min"], row["cushion_max"]) == (0.246, 0.087, 0.300)
    assert (row["leverage"], row["leverage_min"], row["leverage_max"]) == (1.90, 1.50, 2.40)
    assert (row["net_leverage_min"], row["net_leverage_max"]) == (1.20, 2.10)
    assert row["extra"]["net_leverage"] == 1.60
    assert (row["net_liquidation"], row["net_liquidation_min"]) == (80_000.0, 80_000.0)
    assert row["net_liquidation_max"] == 100_000.0
    assert worst_in_minute(row, "cushion") == 0.087
    assert worst_in_minute(row, "leverage") == 2.40
    assert worst_in_minute(row, "net_leverage") == 2.10


def test_a_missing_figure_does_not_erase_the_minute_range(tmp_path):
    """An evaluation without a cushion (NaN, None) keeps what the minute saw."""
    with Store(tmp_path / "state.sqlite3") as store:
        store.record_sample("DU1", T0, {"cushion": 0.12})
        store.record_sample("DU1", T0 + timedelta(seconds=10), {"cushion": None})
        store.record_sample("DU1", T0 + timedelta(seconds=20), {"cushion": float("nan")})
        (row,) = store.samples("DU1", T0, T0 + timedelta(minutes=1))
    assert row["cushion"] is None
    assert (row["cushion_min"], row["cushion_max"]) == (0.12, 0.12)
    assert worst_in_minute(row, "cushion") == 0.12


def write_v3_file(path: Path) -> None:
    """A state file as the v3 monitor left it: its schema (migrations 1 to 3, the SQL that
    version ran) and two history rows written by its ``record_sample`` (the last value wins,
    one a minute, net leverage inside ``extra``)."""
    db = sqlite3.connect(path)
    for version in (1, 2, 3):
        for statement in _split_sql(_MIGRATIONS[version]):
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    for minute, (cushion, gross, net) in enumerate([(0.246, 1.90, 1.60), (0.25, 1.80, None)]):
        at = T0 + timedelta(minutes=minute, seconds=40)
        extra = {"base_currency": "USD", **({"net_leverage": net} if net is not None else {})}
        db.execute(
            "INSERT INTO samples (account, minute, at, net_liquidation, cushion, leverage,"
            " estimated, extra) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (
                "DU1",
                int(at.timestamp() // 60),
                at.isoformat(timespec="microseconds"),
                80_000.0,
                cushion,
                gross,
                json.dumps(extra),
            ),
        )
    db.execute(
        "INSERT INTO daemon_state VALUES ('gateway', '{\"connected\": true}', ?)",
        (T0.isoformat(timespec="microseconds"),),
    )
    db.commit()
    db.close()


def columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute("PRAGMA table_info(samples)")}


def test_a_v3_file_is_migrated_in_place_keeping_its_history(tmp_path):
    path = tmp_path / "monitor.sqlite3"
    write_v3_file(path)
    assert "cushion_min" not in columns(path)

    with Store(path, readonly=True) as old:  # status reads a v3 file as it is
        assert old.schema_version == 3
        (first, _) = old.samples("DU1", T0, T0 + timedelta(minutes=2))
        assert (first["cushion_min"], first["leverage_max"]) == (0.246, 1.90)

    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        first, second = store.samples("DU1", T0, T0 + timedelta(minutes=2))
        # the one value a v3 minute kept is its lowest and highest
        assert (first["cushion_min"], first["cushion_max"]) == (0.246, 0.246)
        assert (first["net_leverage_min"], first["net_leverage_max"]) == (1.60, 1.60)
        assert (second["net_leverage_min"], second["net_leverage_max"]) == (None, None)
        assert store.daemon_state("gateway") is not None
        # and the migrated minute widens as new evaluations arrive in it
        store.record_sample("DU1", T0 + timedelta(seconds=50), {"cushion": 0.087})
        (first,) = store.samples("DU1", T0, T0 + timedelta(minutes=1))
        assert (first["cushion"], first["cushion_min"], first["cushion_max"]) == (
            0.087,
            0.087,
            0.246,
        )
    assert {"cushion_min", "leverage_max", "net_leverage_min"} <= columns(path)
    with Store(path) as again:  # opening twice migrates once
        assert again.schema_version == 4


# -- what reads the history ----------------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")


def test_the_summary_reports_the_worst_moment_of_a_minute_not_its_last_value(tmp_path):
    """The bug of issue 12: the alert saw 8.7%, the summary said "min 24.6%"."""
    with Store(tmp_path / "state.sqlite3") as store:
        record_minute(store)
        samples = [to_sample(r) for r in store.samples("DU1", T0, T0 + timedelta(minutes=1))]
    day = summarize("DU1", T0.date(), samples, peak=None)
    assert (day.cushion_min, day.cushion_max, day.cushion_close) == (0.087, 0.300, 0.246)
    assert day.cushion_min_at == T0 + timedelta(seconds=40)  # the minute's row (10:30 New York)
    assert (day.leverage_min, day.leverage_max) == (1.50, 2.40)
    assert (day.net_leverage_min, day.net_leverage_max) == (1.20, 2.10)
    assert (day.nlv_low, day.nlv_high, day.nlv_close) == (80_000.0, 100_000.0, 80_000.0)
    lines = render_lines(day, NEW_YORK)
    assert "Cushion: min 8.7% at 10:30, max 30.0%, close 24.6%" in lines
    assert "Leverage: net 1.20x to 2.10x; gross 1.50x to 2.40x" in lines


def chart_day() -> tuple[list[Sample], list[dict], list[dict]]:
    """Six minutes' rows on 2026-06-15 (EDT): 10:00, 10:01, 10:02, a disconnect 10:02:30 to
    10:05, 10:06, 10:07, then nothing until 10:20 (a hole); a warning at 10:01, a critical
    at 10:06 and the all-clear at 10:20."""
    opening = datetime(2026, 6, 15, 10, 0, tzinfo=NEW_YORK)
    minutes = [0, 1, 2, 6, 7, 20]
    lows = [0.30, 0.087, 0.15, 0.09, 0.12, 0.25]
    samples = [
        Sample(
            at=opening + timedelta(minutes=m),
            cushion=low + 0.05,
            leverage=1.5,
            lows={"cushion": low},
            highs={"leverage": 1.5 + index / 10, "net_leverage": 1.2},
        )
        for index, (m, low) in enumerate(zip(minutes, lows, strict=True))
    ]
    gaps = [
        {
            "start": opening + timedelta(minutes=2, seconds=30),
            "end": opening + timedelta(minutes=5),
            "reason": "disconnected",
        }
    ]
    events = [
        {"at": opening + timedelta(minutes=1), "severity": "warning", "rule": "cushion"},
        {"at": opening + timedelta(minutes=6), "severity": "critical", "rule": "cushion"},
        {"at": opening + timedelta(minutes=20), "severity": "ok", "rule": "cushion"},
    ]
    return samples, gaps, events


@pytest.mark.slow
def test_the_png_chart_draws_each_minute_at_its_worst_and_breaks_across_gaps(tmp_path):
    samples, gaps, events = chart_day()
    figure = chart_figure(samples, title="DU1", zone=NEW_YORK, gaps=gaps, events=events)
    top, bottom = figure.axes
    (cushion, *_) = top.get_lines()
    values = [float(y) for y in cushion.get_ydata()]
    # a NaN before 10:06 (the disconnect) and before 10:20 (13 minutes without a row)
    assert [round(v, 1) if v == v else "break" for v in values] == [
        30.0, 8.7, 15.0, "break", 9.0, 12.0, "break", 25.0,
    ]
    gross = next(line for line in bottom.get_lines() if "gross leverage" in line.get_label())
    assert [round(float(v), 1) for v in gross.get_ydata() if v == v] == [
        1.5, 1.6, 1.7, 1.8, 1.9, 2.0,
    ]
    top_labels = [text.get_text() for text in top.get_legend().get_texts()]
    assert {"warning 20%", "critical 10%", "alert: warning", "alert: critical"} <= set(
        top_labels
    )
    assert "alert: resolved" in top_labels
    bottom_labels = [text.get_text() for text in bottom.get_legend().get_texts()]
    # gross leverage has no warning level by default: it is not drawn
    assert {"net warning 1.6x", "net critical 2.0x", "gross critical 2.0x"} == {
        label for label in bottom_labels if "warning" in label or "critical" in label
    }
    marks = [line for line in top.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_color() for line in marks] == ["orange", "red", "green"]
    assert bottom.get_xlabel() == "time (America/New_York, EDT)"
    path = render_chart(samples, tmp_path / "day.png", title="DU1", zone=NEW_YORK, gaps=gaps)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_web_chart_breaks_across_a_disconnect_and_a_hole_and_names_its_zone():
    samples, gaps, _ = chart_day()
    points = [ChartPoint(s.at, s.worst("cushion"), s.worst("leverage")) for s in samples]
    panels = [Panel("cushion", "Cushion", "percent", (0.20, 0.10))]
    spans = [(gap["start"], gap["end"]) for gap in gaps]
    svg = day_chart_svg(points, panels, gaps=spans, zone=NEW_YORK)
    assert svg.count('class="line line-cushion"') == 3  # 10:00-10:02, 10:06-10:07, 10:20
    assert '<text class="zone"' in svg and ">EDT</text>" in svg
    assert line_breaks([s.at for s in samples], spans) == {3, 5}
    assert line_breaks([s.at for s in samples], spans, hole=timedelta(minutes=15)) == {3}
    assert line_breaks([s.at for s in samples], [(spans[0][0], None)]) == {3, 4, 5}


@pytest.mark.slow
def test_status_shows_the_worst_of_the_last_minute_beside_its_last_value(tmp_path):
    """``status`` (a subprocess) on a minute whose cushion dipped to 8.7% and closed at 24.6%."""
    state = tmp_path / "state"
    state.mkdir()
    with Store(state / "monitor.sqlite3") as store:
        record_minute(store, start=datetime.now(UTC).replace(second=0) - timedelta(minutes=1))
    config = tmp_path / "config.toml"
    config.write_text(f'[monitor]\nstate_dir = "{state}"\n', encoding="utf-8")
    text = margin_monitor("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert (
        "cushion 24.6% (worst 8.7% within that minute), net 1.60x (worst 2.10x within that "
        "minute), gross 1.90x (worst 2.40x within that minute)"
    ) in text.stdout
    data = json.loads(margin_monitor("status", "--json", "--config", str(config)).stdout)
    (account,) = data["accounts"]
    assert account["cushion"] == 0.246
    assert account["worst_in_minute"]["cushion"] == 0.087
    assert account["worst_in_minute"]["leverage"] == 2.40
    assert account["worst_in_minute"]["net_liquidation"] == 80_000.0


def test_sparse_points_are_joined_unless_far_beyond_their_usual_spacing():
    """On an accelerated demo clock rows come 50 minutes apart: the line joins them (three
    times the median spacing, 150 minutes), and still breaks at a recorded gap."""
    start = datetime(2026, 6, 15, 13, 30, tzinfo=UTC)
    times = [start + timedelta(minutes=50 * i) for i in range(5)] + [
        start + timedelta(minutes=200 + 151)
    ]
    assert line_breaks(times) == {5}
    gap = [(times[1] + timedelta(minutes=1), times[1] + timedelta(minutes=2))]
    assert line_breaks(times, gap) == {2, 5}
