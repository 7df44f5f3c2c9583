"""Logging: structlog for our events, the same pipeline for ib_async's and apprise's stdlib logs.

A readable console on stderr and, optionally, JSON lines in a file rotated at midnight UTC.
Every line passes :class:`Redactor`, which blanks registered secrets (Apprise URLs, heartbeat
URLs and each of their credential parts) and the credential part of any ``scheme://`` URL, so a
token never reaches a log, at any level.

Addresses the monitor publishes itself (the metrics endpoint, the status page, the heartbeat
shown without its path) are registered with :meth:`Redactor.allow` and stay readable.

One line per event: ib_async reports every IB error, a refused connection and a closed socket
in its own lines, and Apprise every failed delivery, while the connector and the notifier say
the same in plain words; :class:`AlreadySaid` drops those doubles at the handlers.

A secret is blanked whatever its length: one of :data:`SHORT_SECRET` characters or more
wherever it appears, a shorter one (a 3-letter password, a chat id) where it stands as a word
of its own, so it cannot eat into ordinary words of the log line.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import structlog

REDACTED = "***"
# scheme://anything-up-to-whitespace-or-quote: an Apprise URL carries its tokens in the path.
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]{1,20})://[^\s'\"<>]+")
_SAFE_SCHEMES = frozenset({"console"})
#: Secrets at least this long are blanked wherever they appear; shorter ones as whole words.
SHORT_SECRET = 8
#: Shorter strings are not secrets worth the name (and would blank ordinary words).
MIN_SECRET = 3


def masker(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that blanks each of ``secrets`` in a text (long ones anywhere, short ones
    where they stand alone, not inside a longer word or number)."""
    chosen = {secret for secret in secrets if secret and len(secret) >= MIN_SECRET}
    long = sorted((s for s in chosen if len(s) >= SHORT_SECRET), key=len, reverse=True)
    short = sorted((s for s in chosen if len(s) < SHORT_SECRET), key=len, reverse=True)
    words = (
        re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, short)) + r")(?![A-Za-z0-9])")
        if short
        else None
    )

    def mask(text: str) -> str:
        for secret in long:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return words.sub(REDACTED, text) if words is not None else text

    return mask


class Redactor:
    """A structlog processor (and plain function) that removes secrets from log events."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._mask = masker(())
        self._public: set[str] = set()

    def register(self, secrets: Iterable[str]) -> None:
        """Add secret strings that must never appear in output."""
        before = len(self._secrets)
        self._secrets.update(secret for secret in secrets if secret and len(secret) >= MIN_SECRET)
        if len(self._secrets) != before:
            self._mask = masker(self._secrets)

    def allow(self, *urls: str) -> None:
        """Keep these exact addresses readable (ones the monitor publishes, holding nothing
        secret: the metrics endpoint, the status page)."""
        self._public.update(url for url in urls if url)

    def clean(self, text: str) -> str:
        """Return ``text`` with every secret and every URL's credentials blanked (the
        published addresses of :meth:`allow` kept as they are)."""
        kept = sorted((url for url in self._public if url in text), key=len, reverse=True)
        for index, url in enumerate(kept):
            text = text.replace(url, f"\x00{index}\x00")
        text = _URL.sub(_redact_url, self._mask(text))
        for index, url in enumerate(kept):
            text = text.replace(f"\x00{index}\x00", url)
        return text

    def _clean_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, dict):
            return {key: self._clean_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean_value(item) for item in value)
        if isinstance(value, BaseException):
            return self.clean(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor entry point."""
        for key, value in list(event_dict.items()):
            event_dict[key] = self._clean_value(value)
        return event_dict


_MASKED = re.compile(r"\*\*\*[^A-Za-z0-9]*")


def _redact_url(match: re.Match[str]) -> str:
    scheme = match.group(1)
    rest = match.group(0).split("://", 1)[1]
    if scheme.lower() in _SAFE_SCHEMES or _MASKED.fullmatch(rest):  # nothing left to hide
        return match.group(0)
    return f"{scheme}://{REDACTED}"


redactor = Redactor()


def configure_logging(
    level: str = "INFO",
    log_file: Path | None = None,
    console_format: str = "console",
    stream: Any = None,
) -> None:
    """Set up structlog and route the stdlib root logger through the same processors."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redactor,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    foreign = [structlog.stdlib.ExtraAdder(), *shared]
    console_renderer: Any = (
        structlog.processors.JSONRenderer()
        if console_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,  # again: tracebacks are rendered only now
                console_renderer,
            ],
        )
    )
    handlers: list[logging.Handler] = [console]
    console.addFilter(ALREADY_SAID)
    if log_file is not None:
        log_file = log_file.expanduser()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.TimedRotatingFileHandler(
            log_file, when="midnight", utc=True, backupCount=14, encoding="utf-8"
        )
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.ExceptionRenderer(
                        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                    ),
                    redactor,  # again: tracebacks are rendered only now
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        file_handler.addFilter(ALREADY_SAID)
        handlers.append(file_handler)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    # ib_async logs every request at INFO; keep its chatter at WARNING unless debugging (and
    # no lower than the level asked for: their records reach the handlers past the root's).
    asked = logging.getLevelName(level)
    noisy_level = logging.DEBUG if level == "DEBUG" else max(logging.WARNING, asked)
    for name in (
        "ib_async",
        "ib_async.client",
        "ib_async.wrapper",
        "ib_async.ib",
        "apprise",
        "apscheduler",
        "urllib3",
    ):
        logging.getLogger(name).setLevel(noisy_level)


class AlreadySaid(logging.Filter):
    """Drop a library's line for an event the monitor logs itself, in plain words.

    - ib_async's ``Error <code>, reqId ...`` / ``Warning ...``: the connector handles every IB
      error code (``errorEvent``) and logs each it does not expect as "gateway error", and a
      request's own caller reports what its error means (no contract, no daily bars);
    - ib_async's "API connection failed", "Make sure API port ..." and "Peer closed
      connection": the connector logs "gateway unavailable" (with the fix) and "disconnected
      from gateway";
    - Apprise's lines while the notifier sends (its threads are named ``notify <target>``):
      the notifier logs the outcome once, with Apprise's reason in it.
    """

    _IB_ERROR = re.compile(r"^(Error|Warning) -?\d+, reqId ")
    _IB_CLIENT = re.compile(
        r"^(API connection failed|Make sure API port|Peer closed connection|Disconnected\.$)"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for a line that doubles one of the monitor's own."""
        name = record.name
        if name == "ib_async.wrapper":
            return not self._IB_ERROR.match(record.getMessage())
        if name == "ib_async.client":
            return not self._IB_CLIENT.match(record.getMessage())
        if name == "apprise" or name.startswith("apprise."):
            return not (record.threadName or "").startswith(NOTIFY_THREAD)
        return True


#: The prefix of the notifier's sending threads (``monitor.notifier.Attempt`` names).
NOTIFY_THREAD = "notify "
ALREADY_SAID = AlreadySaid()
