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


def test_library_lines_that_double_the_monitors_own_are_dropped_once(tmp_path):
    """ib_async's error lines, refused connections and closed sockets, and Apprise's lines
    from a sending thread are dropped at the handlers, console and file alike, however often
    logging is set up; their other lines pass."""
    import threading

    from monitor.logs import NOTIFY_THREAD

    stream = io.StringIO()
    log_file = tmp_path / "monitor.jsonl"
    configure_logging("INFO", None, "console")
    configure_logging("INFO", log_file, "console", stream=stream)  # set up twice: no doubles
    wrapper = logging.getLogger("ib_async.wrapper")
    client = logging.getLogger("ib_async.client")
    wrapper.error("Error 430, reqId 20: We are sorry, but fundamentals data ... not available.")
    client.error("API connection failed: ConnectionRefusedError(111, 'refused')")
    client.error("Make sure API port on TWS/IBG is open")
    client.error("Peer closed connection.")
    logging.getLogger("ib_async.ib").error("completed orders request timed out")

    def send() -> None:
        logging.getLogger("apprise").warning("Failed to send JSON POST notification: 500")

    sender = threading.Thread(target=send, name=f"{NOTIFY_THREAD}json#1")
    sender.start()
    sender.join()
    logging.getLogger("apprise").warning("Unsupported format specified in apprise.yml")
    for handler in logging.getLogger().handlers:
        handler.flush()
    for text in (stream.getvalue(), log_file.read_text()):
        assert "430" not in text and "API connection failed" not in text
        assert "Make sure API port" not in text and "Peer closed" not in text
        assert "Failed to send" not in text
        assert text.count("completed orders request timed out") == 1
        assert text.count("Unsupported format") == 1


def test_published_addresses_stay_readable():
    """The metrics URL is an address the monitor publishes: shown as it is; any other URL's
    path is still masked."""
    clean = Redactor()
    clean.register(["json://127.0.0.1:9464/"])  # a target on the same address, say
    clean.allow("http://127.0.0.1:9464/metrics")
    assert clean.clean("url=http://127.0.0.1:9464/metrics") == "url=http://127.0.0.1:9464/metrics"
    assert clean.clean("url=http://127.0.0.1:9464/hooks/abc") == "url=http://***"
