"""Logs: one pipeline for our events and third-party stdlib logs, with secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import structlog

from monitor.logs import Redactor, configure_logging, redactor

TOKEN = "T0KEN-abcdef-987654"
SLACK_URL = f"slack://{TOKEN}/B00/C00/#alerts"


def test_redactor_blanks_registered_secrets_and_url_credentials():
    """A registered secret and any scheme://... credential part are replaced."""
    clean = Redactor()
    clean.register([SLACK_URL])
    assert TOKEN not in clean.clean(f"failed to post to {SLACK_URL}")
    assert TOKEN not in clean.clean(f"pover://user@{TOKEN}")
    assert "pover://***" in clean.clean(f"pover://user@{TOKEN}")
    assert clean.clean("console://") == "console://"
    assert clean.clean("cushion 9.5% below 10%") == "cushion 9.5% below 10%"


def test_structlog_and_stdlib_lines_are_redacted_in_console_and_json_file(tmp_path):
    """Our events, apprise-style stdlib records and exceptions never carry a token."""
    redactor.register([SLACK_URL])
    stream = io.StringIO()
    log_file = tmp_path / "logs" / "monitor.jsonl"
    configure_logging("INFO", log_file, "console", stream=stream)
    structlog.get_logger("monitor.test").warning("delivery failed", target=SLACK_URL)
    logging.getLogger("apprise").warning("Failed to send to %s", SLACK_URL)
    try:
        raise RuntimeError(f"cannot reach {SLACK_URL}")
    except RuntimeError:
        structlog.get_logger("monitor.test").exception("boom")
    for handler in logging.getLogger().handlers:
        handler.flush()
    console = stream.getvalue()
    written = log_file.read_text()
    assert "delivery failed" in console and "Failed to send" in console
    assert TOKEN not in console
    assert TOKEN not in written
    lines = [json.loads(line) for line in written.splitlines()]
    assert {line["event"] for line in lines} >= {"delivery failed", "boom"}
    assert any(line.get("logger") == "apprise" for line in lines)
