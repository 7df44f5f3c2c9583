"""The service: gateway -> snapshot -> rules -> alert lifecycle -> store and outbox.

Nothing here computes margin figures (``rules`` does), talks to Apprise (``notifier`` does) or
builds its collaborators (``monitor.app`` does). The service decides *when* to evaluate (on
every change, debounced, and on a periodic tick so stale data and reminders are noticed), what
context the rules get (the clock, stored peak, history, link state), and turns lifecycle
transitions into durable notifications. Process concerns (signals, systemd, heartbeat, metrics
endpoint, scheduler) are the daemon's.

Time: the tick and every age the rules judge (of IB's values, of a disconnect) run on the
monotonic clock; the rules still receive wall times (``now`` minus that age), so a wall-clock
step neither invents a stale-data warning nor hides a "monitor blind" alert.

Until an account has been seen, the link itself is watched as the pseudo-account
``gateway@<host:port>`` (health rule only), so a gateway unreachable from the first start is
alerted "monitor blind" like any other outage.

When the state file cannot be written (a full disk), the service degrades instead of going
silent: alert states move on in memory, notifications go out directly, a critical "monitor
degraded" alert goes to every target, and once a write succeeds again everything held in
memory is written and the recovery is announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time as monotonic_time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from monitor import trading_calendar
from monitor.clock import Clock, utc_now
from monitor.estimate import (
    Baseline,
    LiveBook,
    LiveBooks,
    estimate_error,
    make_baseline,
    moved_since,
    options_caveat,
    rate_lookup,
)
from monitor.gateway import GatewayConnector, LinkState, is_link_account
from monitor.metrics import Metrics
from monitor.notifier import (
    Notification,
    Notifier,
    degraded_notice,
    notification_for,
    recovered_notice,
)
from monitor.settings import Settings
from monitor.store import StateUnavailable, Store, StoreError
from rules import account_status, enabled_rules, evaluate, leveraged_factors, run_rule
from rules.catalog import HEALTH_RULE, history_figures_of
from rules.clock import in_window, parse_window, zone
from rules.lifecycle import AlertState, LifecyclePolicy, Transition, step
from rules.model import AccountSnapshot, EvaluationContext, Finding, Severity

log = structlog.get_logger("monitor.service")

NO_VALUES_YET = "no account values received yet"

#: The longest stretch of evaluations without handing the event loop back (seconds): IB's
#: push of a whole advisor login marks every account for a rebuild (~10 ms each), and a
#: trade's push arriving meanwhile must not wait for all of them (it is read and goes first).
EVALUATION_SLICE_SECONDS = 0.02


@dataclass
class AccountView:
    """What the service last knew about one account (for summaries and metrics)."""

    snapshot: AccountSnapshot | None = None
    findings: list[Finding] = field(default_factory=list)
    evaluated_at: datetime | None = None

    @property
    def status(self) -> Severity:
        """The account's status, as ``check`` reports it: the worst finding, never milder than
        ExcessLiquidity alone says (EL < 0 is critical)."""
        return account_status(self.snapshot, self.findings)


class MonitorService:
    """Evaluates the connector's accounts and turns alert transitions into notifications.

    It receives its collaborators (built once by :mod:`monitor.app`) and listens to the
    connector: every update marks its account for evaluation, every link change marks them all.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        connector: GatewayConnector,
        store: Store,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = monotonic_time.monotonic,
        on_evaluated: Callable[[str, AccountView], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.connector = connector
        self.store = store
        self.notifier = notifier
        self.metrics = metrics
        self.on_evaluated = on_evaluated
        connector.on_update = self.request_evaluation
        connector.on_link = self._on_link
        connector.on_price = self._on_price
        connector.on_trade = self._on_trade
        self.zone = zone(settings.monitor.timezone) if settings.monitor.timezone else None
        self.policy = LifecyclePolicy(
            reminder_critical=_minutes(settings.notify.reminder_critical_minutes),
            reminder_warning=_minutes(settings.notify.reminder_warning_minutes),
        )
        window = settings.ib.restart_window
        self.restart_window = parse_window(window) if window else None
        self.known_rate = rate_lookup(
            settings.monitor.maintenance_rates, leveraged_factors(settings.rules.leveraged_etf)
        )
        self.states: dict[tuple[str, str], AlertState] = store.load_alert_states()
        self.views: dict[str, AccountView] = {}
        self.known_accounts: set[str] = {account for account, _ in self.states}
        # The latest transitions, for the demo's recap and tests (bounded: the daemon runs for
        # months; the store keeps the full record).
        self.transitions: deque[Transition] = deque(maxlen=10_000)
        self.evaluations = 0
        self.last_evaluation_seconds = 0.0
        self._dirty: set[str] = set()  # accounts to rebuild from the connector's snapshot
        self._traded: set[str] = set()  # of those, the ones whose positions changed (first)
        self._moved: set[int] = set()  # contracts whose shared price moved
        self._moved_holdings: set[tuple[str, int]] = set()  # holdings whose own value moved
        self._repriced: set[str] = set()  # accounts whose live book moved materially
        self.live = LiveBooks()
        self.min_move = settings.monitor.evaluate_min_move
        self.live_evaluations = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._evaluating = False
        self._gap_started: datetime | None = None
        self._link_recorded: tuple[bool, bool, str | None] | None = None
        self.baselines: dict[str, Baseline] = {}
        self.last_estimates: dict[str, AccountSnapshot] = {}
        self.estimate_errors: dict[str, float] = {}
        # Per account: IB's latest authoritative snapshot and the one before it (margin terms).
        self.authoritative: dict[str, AccountSnapshot] = {}
        self.previous_authoritative: dict[str, AccountSnapshot] = {}
        self.failed_task: str | None = None
        self.link_account = connector.link_account
        # Degraded: why the state file cannot be used, since when, and what waits to be written.
        self.degraded: str | None = None
        self.degraded_since: datetime | None = None
        self._unsaved_states: dict[tuple[str, str], AlertState] = {}
        self._unsaved_events: list[Transition] = []
        self._degraded_note: Notification | None = None
        self._episode = ""
        metrics.attach(self)

    # -- scheduling ------------------------------------------------------------------------

    def request_evaluation(self, account: str) -> None:
        """Mark an account for evaluation soon (called from gateway events)."""
        self._dirty.add(account)
        self._wake.set()

    def _on_trade(self, account: str) -> None:
        """A position changed: the account goes before those whose values only refreshed."""
        self._traded.add(account)

    def _on_price(self, con_id: int, account: str | None) -> None:
        """A streamed value moved (O(1) here: its holders are moved once per debounce)."""
        if account is None:
            self._moved.add(con_id)
        else:
            self._moved_holdings.add((account, con_id))
        self._wake.set()

    def _apply_prices(self) -> None:
        """Move each holder's live book by the moved values (O(holders) per contract); an
        account whose inputs moved materially is evaluated, one its book cannot move alone is
        rebuilt from the connector's snapshot."""
        moved, self._moved = self._moved, set()
        holdings, self._moved_holdings = self._moved_holdings, set()
        if not (moved or holdings):
            return
        connector, live, dirty = self.connector, self.live, self._dirty
        touched: set[str] = set()
        for con_id in moved:
            unit = connector.unit_value(con_id)
            if unit is None:
                dirty.update(connector.holders(con_id))
                continue
            live.move_contract(con_id, unit, touched)
            if live.holder_count(con_id) != connector.holder_count(con_id):
                dirty.update(connector.holders(con_id) - live.holders(con_id))
        for account, con_id in holdings:
            book = live.get(account)
            holding = book.holdings.get(con_id) if book is not None else None
            value = None
            if book is not None and holding is not None:
                quantity = book.positions[holding.index].quantity
                value = connector.holding_value(account, con_id, quantity)
            if book is None or value is None or not book.set_value(con_id, value):
                dirty.add(account)
            else:
                touched.add(account)
        for account in touched - dirty:
            if live.books[account].material():
                self._repriced.add(account)

    def _on_link(self, state: LinkState) -> None:
        now = self.clock()
        if not state.connected and self._gap_started is None:
            self._gap_started = now
        elif state.connected and self._gap_started is not None:
            with contextlib.suppress(Exception):  # history only: never break the connector
                self.store.record_gap(self._gap_started, now, "disconnected")
            self._gap_started = None
        self._record_link(now)
        for account in self.accounts():
            self.request_evaluation(account)

    def _record_link(self, now: datetime) -> None:
        """Write the gateway link's state to the state file when it changed, for ``status``
        (a failed write is left to the next change or tick: it is a nicety)."""
        state = self.connector.state
        current = (state.connected, state.live, state.last_error)
        if current == self._link_recorded:
            return
        since = now
        if not state.connected and state.disconnected_since is not None:
            since = state.disconnected_since
        elif not state.live and state.not_live_since is not None:
            since = state.not_live_since
        record = {
            "endpoint": self.connector.endpoint,
            "connected": state.connected,
            "live": state.live,
            "since": since.isoformat(),
            "last_error": state.last_error,
        }
        with contextlib.suppress(Exception):
            self.store.record_daemon_state("gateway", record, now)
            self._link_recorded = current

    def accounts(self) -> list[str]:
        """Every account watched now or remembered from stored alert state; the link's
        pseudo-account while no real one is known, or while an alert on it is open."""
        current = self.connector.accounts()
        remembered = sorted(self.known_accounts - set(current))
        real = [a for a in current + remembered if not is_link_account(a)]
        links = [a for a in remembered if is_link_account(a) and self._open_alert(a)]
        if not real and self.link_account not in links:
            links.append(self.link_account)
        return real + links

    def _open_alert(self, account: str) -> bool:
        return any(
            state.severity != Severity.OK
            for (who, _), state in self.states.items()
            if who == account
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set: the connector, the evaluator and the notifier."""
        # The exchange calendar, read by a child process (no pandas in the daemon): off the
        # event loop, once.
        trading_calendar.use_child_process()
        warming = asyncio.create_task(asyncio.to_thread(trading_calendar.warm), name="calendar")
        tasks = [
            asyncio.create_task(self.connector.run(stop), name="gateway"),
            asyncio.create_task(self._evaluate_loop(stop), name="evaluate"),
            asyncio.create_task(self.notifier.run(stop), name="notifier"),
            asyncio.create_task(self._tick_loop(stop), name="tick"),
        ]
        log.info("monitor started", endpoint=self.connector.endpoint)
        self._record_link(self.clock())
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            # Each task runs until ``stop``; one that ends earlier died: stop everything (and
            # exit non-zero, so systemd restarts the daemon) rather than run on half-blind.
            await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if not stop.is_set():
                self.failed_task = next(task.get_name() for task in tasks if task.done())
                log.error("a monitor task ended unexpectedly; stopping", task=self.failed_task)
                stop.set()
        finally:
            stopping.cancel()
            warming.cancel()
            self._wake.set()
            done, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
            if pending:  # let them clean up (the notifier hands back a row it was sending)
                await asyncio.wait(pending, timeout=2)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task failed", task=task.get_name(), error=str(task.exception()))
            log.info("monitor stopped")

    async def _evaluate_loop(self, stop: asyncio.Event) -> None:
        debounce = self.settings.monitor.evaluate_debounce_seconds
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if stop.is_set():
                break
            if debounce:
                await asyncio.sleep(debounce)  # gather a burst of pushes into one evaluation
            self._evaluating = True
            queue: dict[str, bool] = {}  # account -> rebuild, in the order they go
            prices_at = monotonic_time.monotonic()
            self._apply_prices()
            while not stop.is_set():
                if monotonic_time.monotonic() - prices_at >= debounce:  # as often as before
                    prices_at = monotonic_time.monotonic()
                    self._apply_prices()
                queue = self._take_pending(queue)
                if not queue:
                    break
                await self._evaluate_slice(queue)
                await asyncio.sleep(0)  # read what arrived: a new push goes before the rest
            self._evaluating = False
            self._idle.set()

    def _take_pending(self, queue: dict[str, bool]) -> dict[str, bool]:
        """The accounts to evaluate, those marked since ``queue`` was made first (a trade's
        first, then a rebuild when IB pushed, else the live book), then what ``queue`` still
        holds. Prices that moved since the last :meth:`_apply_prices` wait for the next (once
        per debounce: a contract's holders move once however often it ticks meanwhile)."""
        dirty, self._dirty = self._dirty, set()
        repriced, self._repriced = self._repriced - dirty, set()
        traded, self._traded = self._traded & dirty, set()
        if not (dirty or repriced):
            return queue
        fresh = dict.fromkeys(sorted(traded), True) | dict.fromkeys(sorted(dirty), True)
        fresh |= dict.fromkeys(sorted(repriced), False)
        for account, rebuild in queue.items():
            fresh[account] = fresh.get(account, False) or rebuild
        return fresh

    async def _evaluate_slice(self, queue: dict[str, bool]) -> None:
        """Evaluate accounts from the front of ``queue`` for up to EVALUATION_SLICE_SECONDS."""
        deadline = monotonic_time.perf_counter() + EVALUATION_SLICE_SECONDS
        while queue and monotonic_time.perf_counter() < deadline:
            account = next(iter(queue))
            rebuild = queue.pop(account)
            try:
                await self.evaluate_account(account, rebuild=rebuild)
            except Exception:
                log.exception("evaluation failed", account=account)

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        """Every ``evaluate_every_seconds`` of the monotonic clock (a wall-clock step does
        not stall it), :meth:`tick`."""
        every = self.settings.monitor.evaluate_every_seconds
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                break
            try:
                await self.tick()
            except Exception:
                log.exception("tick failed")

    async def tick(self) -> None:
        """Evaluate every account (stale data, reminders, restart windows); while degraded,
        try to write down what waits in memory."""
        if self.degraded is not None or self.notifier.direct_pending:
            await self._recover()
        self._record_link(self.clock())
        for account in self.accounts():
            if self.live.get(account) is not None and account in self.last_estimates:
                self._repriced.add(account)  # on an estimate: the rules look at it again
            else:  # rebuilt from IB's values (a history sample when they are IB's own)
                self._dirty.add(account)
        self._wake.set()

    async def prune_history(self) -> None:
        """Scheduled: drop history older than the retention."""
        self.store.prune(
            self.clock() - timedelta(days=self.settings.monitor.history_retention_days)
        )

    async def settle(self, timeout: float) -> bool:
        """Wait (bounded) until no evaluation is pending or running and the outbox has nothing
        due or being sent (a row in flight is leased, so ``store.due`` alone would miss it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            now = self.clock()
            sending = any(
                item.next_attempt_at <= now
                and (item.not_before <= item.created_at or item.not_before <= now)
                for item in self.store.outbox("pending")
            )
            waiting = self._dirty or self._moved or self._moved_holdings or self._repriced
            if not (waiting or self._wake.is_set() or self._evaluating or sending):
                return True
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), min(0.2, deadline - loop.time()))
        return False

    def healthy(self) -> bool:
        """Reading the gateway (connected, live, no wedged frame, heard from within a probe's
        reach), with every account's values no older than the stale limit."""
        if not self.connector.reading():
            return False
        limit = self.settings.rules.stale_data.stale_minutes * 60
        for account in self.connector.accounts():
            age = self.connector.values_age(account)
            if age is None or age > limit:
                return False
        return True

    def outbox_pending(self) -> int | None:
        """Notifications (one row per target) waiting in the outbox, for the metrics; ``None``
        when the state file cannot be read now."""
        try:
            return self.store.pending_count()
        except Exception:  # a scrape never fails on the state file (degraded: said elsewhere)
            return None

    # -- evaluation ------------------------------------------------------------------------

    def _ago(self, now: datetime, seconds: float | None) -> datetime | None:
        """``now`` less an age measured on the monotonic clock (``None`` stays ``None``)."""
        return None if seconds is None else now - timedelta(seconds=seconds)

    def _stored(self, read: Callable[[], float | None]) -> float | None:
        """A value read from the state file, or ``None`` when the file cannot be read."""
        try:
            return read()
        except StoreError as problem:
            self._note_trouble(problem)
            return None

    def context(self, account: str, snapshot: AccountSnapshot | None) -> EvaluationContext:
        """Everything besides the snapshot that the rules may use. The ages the health rule
        judges come from the monotonic clock, expressed as wall times before ``now``."""
        now = self.clock()
        state = self.connector.state
        link = self.connector
        shares = dict(self.connector.shares_outstanding)
        year_ago = self._stored(
            lambda: self.store.financing_cost_near(
                account, now - timedelta(days=365), timedelta(days=7)
            )
        )
        age = link.quiet_for() if is_link_account(account) else link.values_age(account)
        last_update = self._ago(now, age)
        not_live_since = self._ago(now, link.not_live_for())
        if state.connected and not state.live and not_live_since is not None:
            # After 1100 nothing IB sends is live: the data is as old as the loss, at least
            # (so a long 1100 becomes a stale-data warning instead of passing silently).
            last_update = min(last_update, not_live_since) if last_update else not_live_since
        quote = self.connector.benchmark_quote()
        return EvaluationContext(
            now=now,
            peak_net_liquidation=self._stored(lambda: self.store.peak(account)),
            financing_cost_year_ago=year_ago,
            shares_outstanding=shares,
            connected=state.connected,
            disconnected_since=self._ago(now, link.down_for()),
            last_update=last_update,
            in_restart_window=bool(
                self.restart_window and in_window(now, self.restart_window, self.zone)
            ),
            benchmark_symbol=quote.symbol if quote else None,
            benchmark_price=quote.price if quote else None,
            benchmark_peak=quote.peak if quote else None,
            benchmark_peak_on=quote.peak_on if quote else None,
            benchmark_note=quote.note if quote else None,
            previous_snapshot=self.previous_authoritative.get(account),
            trading_day=trading_calendar.trading_day_at(now),
        )

    def _track_authoritative(self, account: str, snapshot: AccountSnapshot) -> None:
        """Keep IB's latest snapshot and the one before it: a new one is a new ``as_of``
        (IB pushed values). The first look after a push with every position valued is kept,
        with the position values of that moment (IB's requirement was computed at those
        prices)."""
        latest = self.authoritative.get(account)
        if latest is not None and latest.as_of == snapshot.as_of:
            if any(p.market_value is None for p in latest.positions):
                self.authoritative[account] = snapshot  # values streamed in after IB's push
            return
        if latest is not None:
            self.previous_authoritative[account] = latest
        self.authoritative[account] = snapshot

    def findings_for(
        self, account: str, rebuild: bool = True
    ) -> tuple[AccountSnapshot | None, list[Finding]]:
        """Snapshot and findings for one account, holding alerts when data is not live.

        Only streamed values moved since the last look (``rebuild`` false): the account's live
        book gives the estimate. Otherwise (IB pushed values or positions, a tick, the link)
        the snapshot is rebuilt from the connector and the live book with it.
        """
        link = self.connector.state
        config = self.settings.rules
        book = self.live.get(account)
        if not rebuild and book is not None and self._missing_reason(account, book.current) is None:
            live = book.snapshot(self.clock())
            book.mark_evaluated()
            self.last_estimates[account] = live
            self.live_evaluations += 1
            return live, with_caveat(live, evaluate(live, self.context(account, live), config))
        self.live.drop(account)
        if is_link_account(account):  # the link itself: only the health rule applies
            context = self.context(account, None)
            placeholder = AccountSnapshot(account, "", context.now)
            return None, [run_rule(HEALTH_RULE, placeholder, context, config)]
        snapshot = self.connector.snapshot(account) if link.connected else None
        reason = self._missing_reason(account, snapshot)
        if reason is None and snapshot is not None:
            self._track_authoritative(account, snapshot)
            context = self.context(account, snapshot)
            if self.settings.monitor.estimate:
                snapshot = self._estimate(account, snapshot)
            return snapshot, with_caveat(snapshot, evaluate(snapshot, context, config))
        context = self.context(account, snapshot)
        # Every rule holds its alert; only the health rule judges the link itself.
        health_input = snapshot or AccountSnapshot(account, "", context.now)
        return snapshot, [
            run_rule(rule, health_input, context, config)
            if rule == HEALTH_RULE
            else missing_finding(account, rule, reason or NO_VALUES_YET)
            for rule in enabled_rules(config)
        ]

    def _estimate(self, account: str, snapshot: AccountSnapshot) -> AccountSnapshot:
        """Between IB's account updates, move the figures with the streamed position values.

        IB's values are new when the snapshot's ``as_of`` (when they arrived) changed: they
        become the baseline and are used as they are, replacing any estimate, and the
        estimate's error against them is recorded. Otherwise, once a position's value moved,
        the baseline's figures are moved with it and marked estimated. A position whose value
        was not known yet when IB's values arrived joins the baseline at its first value.
        """
        baseline = self.baselines.get(account)
        if baseline is None or snapshot.as_of != baseline.snapshot.as_of:
            estimated_before = self.last_estimates.pop(account, None) is not None
            if baseline is not None and (estimated_before or moved_since(baseline, snapshot)):
                self._record_estimate_error(account, baseline, snapshot)
            baseline = self.baselines[account] = make_baseline(snapshot, self.known_rate)
            self.live.put(account, LiveBook(baseline, snapshot, self.min_move))
            return snapshot
        baseline = self.baselines[account] = baseline.filled(snapshot)
        book = LiveBook(baseline, snapshot, self.min_move)
        self.live.put(account, book)
        if not moved_since(baseline, snapshot):
            self.last_estimates.pop(account, None)
            return snapshot
        estimated = book.snapshot(self.clock())  # = estimate(baseline, snapshot) now
        self.last_estimates[account] = estimated
        return estimated

    def _record_estimate_error(
        self, account: str, baseline: Baseline, truth: AccountSnapshot
    ) -> None:
        """Log and keep (estimated - reported) ExcessLiquidity when IB's new values arrive.

        The estimate is remade from the previous baseline with the position values of IB's
        new snapshot, so both sides describe the same prices (the last estimate made may
        predate the final price moves). Kept in ``estimate_errors`` as a fraction of NLV.
        """
        error = estimate_error(baseline, truth)
        if error is None:
            return
        self.estimate_errors[account] = error.of_nlv
        guess = error.estimated
        log.info(
            "estimate replaced by IB's values",
            account=account,
            estimated_excess_liquidity=_rounded(guess.excess_liquidity, 2),
            reported_excess_liquidity=_rounded(truth.excess_liquidity, 2),
            estimated_cushion=_rounded(guess.cushion, 6),
            reported_cushion=_rounded(truth.cushion, 6),
            difference=round(error.difference, 2),
            difference_of_nlv=round(error.of_nlv, 6),
            seconds_since_previous=round((truth.as_of - baseline.snapshot.as_of).total_seconds()),
        )

    def _missing_reason(self, account: str, snapshot: AccountSnapshot | None) -> str | None:
        """Why the account's data cannot be judged now, or None when it can."""
        link = self.connector.state
        if not link.connected:
            return "gateway disconnected"
        if not link.live:
            return "gateway lost its IB connection (1100)"
        if account not in self.connector.accounts():
            return f"account {account} is not in the managed accounts list"
        if snapshot is None:
            return NO_VALUES_YET
        return None

    async def evaluate_account(self, account: str, rebuild: bool = True) -> list[Finding]:
        """Evaluate one account now: findings -> lifecycle -> store/notifier (``rebuild``
        false: only streamed values moved, the live book gives the figures)."""
        started = monotonic_time.perf_counter()
        now = self.clock()
        snapshot, findings = self.findings_for(account, rebuild)
        self.last_evaluation_seconds = monotonic_time.perf_counter() - started
        self.metrics.evaluation_seconds.observe(self.last_evaluation_seconds)
        self.evaluations += 1
        self.known_accounts.add(account)
        if snapshot is not None and not snapshot.estimated and snapshot.net_liquidation:
            try:  # history is a nicety: a failed write must never hold back an alert
                self.store.update_peak(account, snapshot.net_liquidation)
                self.store.record_sample(account, now, history_figures(snapshot, findings))
            except StoreError as problem:
                self._note_trouble(problem)
            except Exception:
                log.exception("history not recorded", account=account)
        for finding in findings:
            key = (account, finding.rule)
            new_state, transition = step(self.states.get(key), finding, now, self.policy)
            if transition is not None:
                await self._announce(new_state, transition, snapshot)
            elif new_state != self.states.get(key):
                self.states[key] = new_state
                try:
                    self.store.save_alert_state(new_state)
                except StoreError as problem:
                    self._unsaved_states[key] = new_state
                    self._note_trouble(problem)
        if self.degraded is not None and self._degraded_note is not None:
            note, self._degraded_note = self._degraded_note, None
            await self.notifier.submit_direct(note)
        view = AccountView(snapshot, findings, now)
        self.views[account] = view
        if self.on_evaluated is not None:
            self.on_evaluated(account, view)
        return findings

    async def _announce(
        self, new_state: AlertState, transition: Transition, snapshot: AccountSnapshot | None
    ) -> None:
        """Persist the new state, the event and the outbox rows together, then deliver.

        When that write fails (the state file cannot be written), the notification is sent
        directly instead and the state and event wait in memory until a write succeeds
        (:meth:`_recover`): degraded, never silent.
        """
        base = snapshot.base_currency if snapshot is not None else ""
        note = notification_for(transition, base)
        try:
            with self.store.transaction():
                self.store.save_alert_state(new_state)
                self.store.record_alert_event(transition)
                self.notifier.enqueue(note)
        except StoreError as problem:
            self._unsaved_states[new_state.key] = new_state
            self._unsaved_events.append(transition)
            self._note_trouble(problem)
            written = False
        else:
            written = True
        self.states[new_state.key] = new_state
        self.transitions.append(transition)
        finding = transition.finding
        log.info(
            "alert",
            kind=transition.kind,
            account=finding.account,
            rule=finding.rule,
            severity=str(transition.new_severity),
            value=finding.value,
            estimated=finding.estimated,
        )
        if written:
            await self.notifier.submit(note)
            return
        if self._degraded_note is not None:  # the monitor's own alert goes first
            first, self._degraded_note = self._degraded_note, None
            await self.notifier.submit_direct(first)
        await self.notifier.submit_direct(note)

    # -- degraded: the state file cannot be written -----------------------------------------

    def _note_trouble(self, problem: StoreError) -> None:
        """A read or write of the state file failed: enter the degraded mode (once per
        stretch: one log line and one "monitor degraded" alert, sent on the next occasion)."""
        reason = problem.reason if isinstance(problem, StateUnavailable) else str(problem)
        if self.degraded is not None:
            return
        now = self.clock()
        self.degraded, self.degraded_since = reason, now
        self._episode = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        log.error(
            "state not writable; alerts are sent directly, without the outbox (best effort)",
            reason=reason,
            state_file=str(self.store.path),
        )
        self._degraded_note = degraded_notice(reason, self.store.path, self._episode, now)

    async def _recover(self) -> None:
        """Write what waited in memory (alert states, events, direct sends); once all of it
        is in, leave the degraded mode and announce it."""
        try:
            with self.store.transaction():
                for state in self._unsaved_states.values():
                    self.store.save_alert_state(state)
                for transition in self._unsaved_events:
                    self.store.record_alert_event(transition)
            self._unsaved_states.clear()
            self._unsaved_events.clear()
            if not self.notifier.record_direct():
                return  # a direct send is in flight: recorded on the next tick
        except StoreError:
            return
        if self.degraded is None:
            return
        since = self.degraded_since or self.clock()
        log.info(
            "state writable again; the outbox is back in use",
            degraded_for_seconds=round((self.clock() - since).total_seconds()),
        )
        self.degraded = self.degraded_since = None
        if self._degraded_note is not None:  # never sent: nobody to tell it is over
            self._degraded_note = None
            return
        try:
            await self.notifier.submit(
                recovered_notice(self.store.path, self._episode, since, self.clock())
            )
        except StoreError as problem:
            self._note_trouble(problem)


def missing_finding(account: str, rule: str, reason: str) -> Finding:
    """A finding that says the data is missing: it holds every alert as it is."""
    return Finding(
        rule=rule,
        account=account,
        severity=Severity.UNKNOWN,
        value=None,
        threshold=None,
        message=f"no data: {reason}",
        data_missing=True,
    )


def with_caveat(snapshot: AccountSnapshot, findings: list[Finding]) -> list[Finding]:
    """Findings made on an estimate of a book with options, saying what it cannot know."""
    caveat = options_caveat(snapshot)
    if caveat is None:
        return findings
    return [
        replace(
            finding,
            message=f"{finding.message} ({caveat})",
            details={**finding.details, "estimate_caveat": caveat},
        )
        for finding in findings
    ]


def history_figures(snapshot: AccountSnapshot, findings: list[Finding]) -> dict[str, Any]:
    """The per-minute history row for an evaluation (the daily summary reads these)."""
    from_rules = history_figures_of(findings)
    nlv = snapshot.net_liquidation or 0.0
    largest = sorted(
        (p for p in snapshot.positions if p.market_value_base is not None),
        key=lambda p: abs(p.market_value_base or 0.0),
        reverse=True,
    )[:5]
    return {
        "net_liquidation": snapshot.net_liquidation,
        "excess_liquidity": snapshot.excess_liquidity,
        "cushion": snapshot.measured_cushion,
        "gross_position_value": snapshot.gross_position_value,
        "maint_margin_req": snapshot.maint_margin_req,
        "leverage": snapshot.leverage,
        "margin_loan": snapshot.margin_loan,
        "annual_financing_cost": from_rules.pop("annual_financing_cost", None),
        "estimated": snapshot.estimated,
        "extra": {
            "base_currency": snapshot.base_currency,
            **from_rules,
            "largest_positions": [
                {
                    "symbol": p.symbol,
                    "value": p.market_value_base,
                    "share": (p.market_value_base or 0.0) / nlv if nlv > 0 else None,
                }
                for p in largest
            ],
        },
    }


def _minutes(value: float | None) -> timedelta | None:
    return timedelta(minutes=value) if value else None


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
