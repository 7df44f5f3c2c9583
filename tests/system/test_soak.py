"""Soak (issue 4): an accelerated, seeded day of breaches, drops, error bursts, endpoint failures.

The day is a plan drawn from a seeded random generator (written to ``tmp_path/soak_plan.json``
so a failure can be replayed and read): several breach/recovery episodes of DU1000001's cushion
on the built-in sell-off scenario, some going through a warning first, with gateway drops and
restarts, 1100/1102 and 1100/1101 bursts, garbage frames and clean restarts of the daemon itself
(same state directory) before, during and after each breach, while the notification endpoint
fails for whole stretches or for a few requests. A second target dribbles its answers a byte at
a time all day (every attempt is cut at the 1 s send deadline) and answers normally at the end;
for one whole episode the state directory's filesystem is full (a small tmpfs, where the
machine allows mounting one), so the monitor runs degraded and then recovers.

Everything is real (ib_async over loopback, Apprise to local receivers, SQLite); every wait is
a condition with a deadline. At the end the receivers' ids and the store must show: every
breach notified exactly once (by id), every recovery notified, no notification lost (every
outbox row sent and received by both targets), no id delivered twice. The counts are printed
(a kill -9 is not part of this in-process day: its repeats are counted apart, as "re-sent after
kill", by ``test_faults``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import fill, make_settings, tiny_filesystem, until

from monitor.app import build_daemon, build_service
from monitor.service import AccountView, MonitorService
from monitor.settings import Settings
from monitor.sim.receiver import Receiver
from monitor.sim.server import GARBAGE_KINDS, SimulatedGateway
from rules.model import Severity

SEED = int(os.environ.get("SOAK_SEED", "20240604"))  # replay another day: SOAK_SEED=n
EPISODES = 24
ACCOUNT = "DU1000001"
QUIET = "DU1000002"
HELD = ("VTI", "BND")  # DU1000002's holdings never move: that account stays quiet
DISRUPTIONS = ("drop", "restart", "burst_1102", "burst_1101", "garbage", "daemon_restart")
RECONNECTING = ("drop", "restart", "burst_1101", "daemon_restart")


@dataclass
class Counts:
    """What the day went through."""

    drops: int = 0
    error_bursts: int = 0
    resubscribes: int = 0
    garbage: int = 0
    daemon_restarts: int = 0
    endpoint_stretches: int = 0
    flaky_requests: int = 0
    full_disk: str = "skipped"


def full_disk_episode(plan: list[dict[str, Any]]) -> int:
    """The first episode whose breach sees no daemon restart (the disk fills before the
    breach and frees before the recovery: a restart in between would forget what the
    degraded monitor keeps in memory, which is the documented limit of that mode)."""
    return next(
        episode["episode"]
        for episode in plan
        if "daemon_restart" not in [episode["before"], *episode["during"]]
    )


def make_plan(rng: random.Random, episodes: int) -> list[dict[str, Any]]:
    """The scripted day: one entry per breach/recovery episode."""
    plan = []
    for number in range(1, episodes + 1):
        plan.append(
            {
                "episode": number,
                "before": rng.choice([*DISRUPTIONS, None]),
                "endpoint_fails": rng.random() < 0.5,
                "endpoint_recovers": rng.choice(["mid-breach", "after-recovery", "later"]),
                "flaky_requests": rng.randint(0, 3),
                "via_warning": rng.random() < 0.5,
                "warning_factor": round(rng.uniform(0.76, 0.79), 4),
                "critical_factor": round(rng.uniform(0.66, 0.69), 4),
                "during": rng.sample(DISRUPTIONS, k=rng.randint(1, 2)),
                "recovery_factor": round(rng.uniform(0.97, 1.05), 4),
                "after": rng.choice([*DISRUPTIONS, None]),
                "restart_down": round(rng.uniform(0.1, 0.4), 2),
                "garbage_kind": rng.choice(GARBAGE_KINDS),
            }
        )
    return plan


class Daemon:
    """The real daemon in this loop, restartable with the same state directory.

    The notifier retries after 0.1 s (doubling up to 1 s) instead of 5 s.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.views: list[AccountView] = []  # DU1000001's evaluations, across restarts
        self.service: MonitorService | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    def _evaluated(self, account: str, view: AccountView) -> None:
        if account == ACCOUNT:
            self.views.append(view)

    async def start(self) -> MonitorService:
        """Start a fresh process-equivalent: new service, state loaded from the store."""
        service = build_service(self.settings, on_evaluated=self._evaluated)
        service.notifier.backoff_base = timedelta(milliseconds=100)
        service.notifier.backoff_max = timedelta(seconds=1)
        self._stop = asyncio.Event()
        daemon = build_daemon(self.settings, service=service)
        self._task = asyncio.create_task(daemon.run(self._stop))
        self.service = service
        return service

    async def stop(self) -> None:
        """Stop cleanly; the daemon must not have ended on its own."""
        assert self._task is not None and not self._task.done(), "the daemon ended on its own"
        self._stop.set()
        assert await asyncio.wait_for(self._task, 20) == 0


@contextlib.asynccontextmanager
async def daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """A started :class:`Daemon`, stopped on exit."""
    runner = Daemon(settings)
    await runner.start()
    try:
        yield runner
    finally:
        with contextlib.suppress(AssertionError):
            await runner.stop()


class Day:
    """Plays the plan against the gateway, the receiver and the running service."""

    def __init__(
        self,
        gateway: SimulatedGateway,
        receiver: Receiver,
        runner: Daemon,
        full_disk: tuple[int, Path] | None = None,
    ) -> None:
        self.gateway, self.receiver, self.runner = gateway, receiver, runner
        self.views = runner.views
        self.initial = dict(gateway.state.prices)
        self.counts = Counts()
        self.failing = False
        self.full_disk = full_disk

    @property
    def service(self) -> MonitorService:
        """The service of the daemon running now."""
        assert self.runner.service is not None
        return self.runner.service

    def prices(self, factor: float) -> dict[str, float]:
        """DU1000001's names at ``factor`` times their starting price."""
        return {s: p * factor for s, p in self.initial.items() if s not in HELD}

    def cushion_level(self) -> Severity:
        """The cushion alert level the service holds."""
        state = self.service.states.get((ACCOUNT, "cushion"))
        return state.severity if state is not None else Severity.OK

    async def reach(self, factor: float, level: Severity) -> None:
        """Move prices and wait until the monitor holds ``level`` for the cushion."""
        self.gateway.set_prices(self.prices(factor))
        await until(lambda: self.cushion_level() == level, 15, f"the cushion is {level.value}")

    def endpoint(self, failing: bool) -> None:
        """Make the receiver fail (HTTP 500) or recover."""
        if failing and not self.failing:
            self.counts.endpoint_stretches += 1
        self.failing = failing
        self.receiver.set_failing(failing)

    async def disrupt(self, kind: str | None, episode: dict[str, Any]) -> None:
        """One disruption, then wait until the monitor is back with live data."""
        if kind is None:
            return
        gateway = self.gateway
        connections = gateway.connections_accepted
        reconnect = kind in RECONNECTING
        if kind == "daemon_restart":
            level = self.cushion_level()
            await self.runner.stop()
            await gateway.wait_for_clients(0, timeout=10)
            await self.runner.start()
            assert self.cushion_level() == level, "the alert state is reloaded"
            self.counts.daemon_restarts += 1
        elif kind == "drop":
            await gateway.drop_clients()
            self.counts.drops += 1
        elif kind == "restart":
            await gateway.restart(episode["restart_down"])
            self.counts.drops += 1
        elif kind == "burst_1102":
            gateway.send_error(1100)
            await until(lambda: not self.service.connector.state.live, 5, "1100 is seen")
            gateway.send_error(1102)
            self.counts.error_bursts += 1
        elif kind == "burst_1101":
            gateway.send_error(1100)
            await until(lambda: not self.service.connector.state.live, 5, "1100 is seen")
            gateway.send_error(1101)
            self.counts.error_bursts += 1
            self.counts.resubscribes += 1
        else:
            garbage = episode["garbage_kind"]
            assert await gateway.send_garbage(garbage) == 1
            self.counts.garbage += 1
            if garbage == "truncated":  # the frame is cut and the socket closed
                reconnect = True
                self.counts.drops += 1
        if reconnect:
            await gateway.wait_until(
                lambda: gateway.connections_accepted > connections and bool(gateway.clients),
                timeout=15,
            )
        mark = len(self.views)
        link = self.service.connector.state
        await until(
            lambda: (
                link.connected
                and link.live
                and any(
                    f.rule == "cushion" and not f.data_missing
                    for view in self.views[mark:]
                    for f in view.findings
                )
            ),
            15,
            f"live data again after {kind}",
        )

    async def episode(self, episode: dict[str, Any], breaches: list[Severity]) -> None:
        """Healthy -> (warning ->) critical, disruptions while breached -> recovered; the
        full-disk episode fills the state's filesystem before the breach and frees it after
        the disruptions, waiting until the monitor has recovered by itself."""
        await self.disrupt(episode["before"], episode)
        filler = None
        if self.full_disk is not None and self.full_disk[0] == episode["episode"]:
            filler = fill(self.full_disk[1])
        if episode["endpoint_fails"]:
            self.endpoint(True)
        elif episode["flaky_requests"]:
            self.receiver.fail_next(episode["flaky_requests"])
            self.counts.flaky_requests += episode["flaky_requests"]
        if episode["via_warning"]:
            await self.reach(episode["warning_factor"], Severity.WARNING)
        await self.reach(episode["critical_factor"], Severity.CRITICAL)
        breaches.append(Severity.CRITICAL)
        for number, kind in enumerate(episode["during"]):
            await self.disrupt(kind, episode)
            assert self.cushion_level() == Severity.CRITICAL, f"false recovery after {kind}"
            if number == 0 and episode["endpoint_recovers"] == "mid-breach":
                self.endpoint(False)
        if filler is not None:
            assert self.service.degraded is not None, "the full disk was noticed"
            filler.unlink()
            await until(lambda: self.service.degraded is None, 15, "recovered from a full disk")
            self.counts.full_disk = f"episode {episode['episode']}, degraded then recovered"
        await self.reach(episode["recovery_factor"], Severity.OK)
        if episode["endpoint_recovers"] == "after-recovery":
            self.endpoint(False)
        await self.disrupt(episode["after"], episode)
        assert self.cushion_level() == Severity.OK


@pytest.mark.slow
def test_an_accelerated_day_loses_nothing_and_repeats_nothing(simulated_gateway, tmp_path, capsys):
    """Every breach notified exactly once, every recovery notified, nothing lost, no id twice."""
    plan = make_plan(random.Random(SEED), EPISODES)
    (tmp_path / "soak_plan.json").write_text(json.dumps({"seed": SEED, "episodes": plan}, indent=2))
    started = time.monotonic()

    state = tmp_path / "state"

    async def scenario(refused: str | None) -> dict[str, Any]:
        with (
            Receiver() as receiver,
            Receiver(behaviour="dribble", dribble_interval=0.5, hang_limit=30) as dribbling,
        ):
            async with simulated_gateway("selloff") as gateway:
                settings = make_settings(
                    tmp_path,
                    gateway.port,
                    [receiver.url, dribbling.url],
                    state_dir=state,
                    notify={"send_timeout_seconds": 1.0},
                )
                async with daemon(settings) as runner:
                    await gateway.wait_for_clients(1, timeout=10)
                    await until(lambda: bool(runner.views), 10, "the first evaluation")
                    disk = None if refused else (full_disk_episode(plan), state)
                    day = Day(gateway, receiver, runner, disk)
                    if refused:
                        day.counts.full_disk = f"skipped: {refused}"
                    breaches: list[Severity] = []
                    for episode in plan:
                        await day.episode(episode, breaches)
                    day.endpoint(False)
                    cut = dribbling.dropped
                    dribbling.behave("ok")
                    service = day.service
                    await until(lambda: service.store.pending_count() == 0, 30, "the outbox drains")
                    await service.settle(timeout=10)
                    far = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                    return {
                        "counts": day.counts,
                        "breaches": len(breaches),
                        "events": service.store.alert_events(None, *far),
                        "outbox": service.store.outbox(),
                        "failed_attempts": len(service.store.deliveries(outcome="failed")),
                        "messages": receiver.messages,
                        "dribbled": dribbling.messages,
                        "cut": cut,
                        "rejected": receiver.rejected,
                        "connections": gateway.connections_accepted,
                        "orders": len(gateway.orders_received),
                    }

    with tiny_filesystem(state, "32m") as refused:
        result = asyncio.run(scenario(refused))
    counts: Counts = result["counts"]
    events = result["events"]
    cushion = [e for e in events if e["account"] == ACCOUNT and e["rule"] == "cushion"]
    received = Counter(m.notification_id for m in result["messages"])
    dribbled = Counter(m.notification_id for m in result["dribbled"])
    outbox_ids = {row.notification_id for row in result["outbox"]}
    duplicates = sorted(
        i for i in set(received) | set(dribbled) if max(received[i], dribbled[i]) > 1
    )
    lost = sorted(
        {row.notification_id for row in result["outbox"] if row.status != "sent"}
        | (outbox_ids - set(received))
        | (outbox_ids - set(dribbled))
    )
    unexpected = sorted(set(received) - outbox_ids)
    fired = [e for e in cushion if e["kind"] == "fired"]
    resolved = [e for e in cushion if e["kind"] == "resolved"]
    escalated = [e for e in cushion if e["kind"] == "escalated"]
    via_warning = sum(1 for episode in plan if episode["via_warning"])

    with capsys.disabled():
        print(
            f"\nsoak (seed {SEED}, {time.monotonic() - started:.1f} s): "
            f"breaches={len(fired)} ({len(escalated)} escalated from a warning) "
            f"recoveries={len(resolved)} drops survived={counts.drops} "
            f"(connections {result['connections']}) daemon restarts={counts.daemon_restarts} "
            f"error bursts={counts.error_bursts} "
            f"resubscribes={counts.resubscribes} garbage frames={counts.garbage} "
            f"endpoint failure stretches={counts.endpoint_stretches} "
            f"flaky requests={counts.flaky_requests} retries={result['failed_attempts']} "
            f"(HTTP 500s {result['rejected']}) dribbling target: {result['cut']} attempts cut, "
            f"then {len(dribbled)} received; full disk: {counts.full_disk}; "
            f"notifications={len(received)} duplicates={len(duplicates)} lost={len(lost)}"
        )

    assert result["breaches"] == EPISODES
    assert len(fired) == EPISODES, "every breach notified once"
    assert len(resolved) == EPISODES, "every recovery notified"
    assert len(escalated) == via_warning
    assert [e["kind"] for e in cushion] == [
        kind
        for episode in plan
        for kind in (["fired", "escalated"] if episode["via_warning"] else ["fired"]) + ["resolved"]
    ]
    for event in cushion:
        assert received[event["notification_id"]] == 1, event
        assert dribbled[event["notification_id"]] == 1, event
    assert not duplicates
    assert not lost
    assert not unexpected
    assert not [e for e in events if e["account"] == QUIET]
    assert counts.drops >= 1 and counts.error_bursts >= 1 and counts.endpoint_stretches >= 1
    assert result["failed_attempts"] >= 1, "the endpoint failures were retried"
    assert counts.daemon_restarts >= 1
    assert result["connections"] >= 1 + counts.drops + counts.resubscribes + counts.daemon_restarts
    assert result["orders"] == 0
    assert result["cut"] >= 3, "the dribbling target was cut off, again and again"
    if not counts.full_disk.startswith("skipped"):
        assert counts.full_disk.endswith("recovered")
        assert any(m.title.startswith("[CRITICAL] monitor degraded") for m in result["messages"])
