"""``[notify] config``: an Apprise configuration file (YAML or text, read by Apprise's own
AppriseConfig) whose entries are routed by their Apprise tags, with real Apprise posting to
local receivers; and what is said when the file cannot be used."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import write_config

from monitor.app import build_notifier
from monitor.cli import main
from monitor.notifier import Notification
from monitor.settings import ConfigError, load_settings
from monitor.sim.receiver import Receiver
from monitor.store import Store

SECRET = "S3cretT0ken99"


def notification(notification_id: str, severity: str, kind: str = "fired") -> Notification:
    return Notification(
        notification_id, "DU1", "cushion", severity, kind, f"[{severity}] {notification_id}",
        "body", datetime.now(UTC),
    )  # fmt: skip


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    """Four local endpoints: a pager, a log, a summary inbox and an untagged catch-all."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(Receiver()) for name in ("pager", "log", "inbox", "catchall")
        }


def yaml_config(receivers: dict[str, Receiver]) -> str:
    return (
        "version: 1\nurls:\n"
        f"  - {receivers['pager'].url}:\n      tag: critical\n"
        f"  - {receivers['log'].url}:\n      tag: warning, critical, info\n"
        f"  - {receivers['inbox'].url}:\n      tag: summary\n"
        f"  - {receivers['catchall'].url}\n"
    )


def text_config(receivers: dict[str, Receiver]) -> str:
    return (
        f"critical={receivers['pager'].url}\n"
        f"warning,critical,info={receivers['log'].url}\n"
        f"summary={receivers['inbox'].url}\n"
        f"{receivers['catchall'].url}\n"
    )


@pytest.mark.parametrize("form", ["yaml", "text"])
def test_entries_receive_what_their_tags_name(tmp_path, receivers, form):
    """A relative ``config = "apprise.yml"`` is read beside the TOML file. Routed by tag: the
    critical goes to the pager and the log, the warning and the info to the log, the daily
    summary to the summary-tagged inbox only (not to the log that takes info), a recovery
    routed 'ok' to every alert target; the untagged entry receives everything."""
    name = "apprise.yml" if form == "yaml" else "apprise.txt"
    (tmp_path / name).write_text((yaml_config if form == "yaml" else text_config)(receivers))
    config = write_config(tmp_path, 1, [], notify={"config": name})
    settings = load_settings(config)
    assert settings.notify.config == tmp_path / name

    async def send() -> None:
        with Store(tmp_path / "state.sqlite3") as store:
            notifier = build_notifier(settings, store)
            assert len(notifier.targets) == 4
            for note in (
                notification("c1", "critical"),
                notification("w1", "warning"),
                notification("i1", "info"),
                notification("s1", "info", kind="summary"),
                notification("r1", "ok", kind="resolved"),
            ):
                await notifier.submit(note)

    asyncio.run(send())
    assert receivers["pager"].ids() == ["c1", "r1"]
    assert receivers["log"].ids() == ["c1", "w1", "i1", "r1"]
    assert receivers["inbox"].ids() == ["s1"]
    assert receivers["catchall"].ids() == ["c1", "w1", "i1", "s1", "r1"]


def test_a_file_apprise_cannot_use_is_one_error_naming_the_key(tmp_path, capsys):
    """A missing file names ``notify.config`` and the path; an entry Apprise cannot parse is
    named with its URL masked (its token never printed); YAML Apprise cannot read says so.
    ``config validate`` and ``run`` stop with exit 2 on each, ``check`` with 3."""
    missing = write_config(tmp_path, 1, [], notify={"config": "nowhere.yml"}, name="a.toml")
    with pytest.raises(ConfigError, match=r"notify.config .*nowhere.yml does not exist"):
        load_settings(missing)
    assert main(["config", "validate", "--config", str(missing)]) == 2
    assert "nowhere.yml does not exist" in capsys.readouterr().err

    (tmp_path / "bad.yml").write_text(f"urls:\n  - nosuchscheme://{SECRET}@host\n")
    bad = write_config(tmp_path, 1, [], notify={"config": "bad.yml"}, name="b.toml")
    assert main(["config", "validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "notify.config (" in err and "nosuchscheme://***" in err and SECRET not in err
    assert main(["run", "--config", str(bad)]) == 2
    assert main(["check", "--config", str(bad)]) == 3
    capsys.readouterr()

    (tmp_path / "broken.yml").write_text("urls: [ [\n")
    broken = write_config(tmp_path, 1, [], notify={"config": "broken.yml"}, name="c.toml")
    assert main(["config", "validate", "--config", str(broken)]) == 2
    assert "Invalid Apprise YAML" in capsys.readouterr().err


def test_validate_counts_the_targets_of_the_file(tmp_path, receivers, capsys):
    """``config validate`` of a file with one URL and an Apprise file of four: OK, 5 targets."""
    (tmp_path / "apprise.yml").write_text(yaml_config(receivers))
    config = write_config(
        tmp_path, 1, [receivers["pager"].url + "/x"], notify={"config": "apprise.yml"}
    )
    assert main(["config", "validate", "--config", str(config)]) == 0
    assert "  5 notification targets" in capsys.readouterr().out.splitlines()


def test_the_file_path_and_its_tags_need_no_secret(tmp_path: Path):
    """The path of the Apprise file is not a secret: the configuration's secrets are the URLs
    given in it directly, which the redactor learns."""
    (tmp_path / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/x\n")
    config = write_config(
        tmp_path, 1, [f"json://127.0.0.1:9/{SECRET}"], notify={"config": "apprise.yml"}
    )
    settings = load_settings(config)
    assert all("apprise.yml" not in secret for secret in settings.secrets())
    assert any(SECRET in secret for secret in settings.secrets())
