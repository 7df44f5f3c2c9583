"""config.example.toml is valid, matches the defaults, and explains every key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from monitor.settings import Settings, load_settings
from rules.config import RulesConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def sections(text: str) -> dict[str, str]:
    """The example's text per [section] header."""
    parts = re.split(r"^\[([a-z_.]+)\]\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def documented(body: str, key: str) -> bool:
    """A key is documented when it appears as `key =` (possibly commented out)."""
    return re.search(rf"^\s*#?\s*{re.escape(key)}\s*=", body, flags=re.MULTILINE) is not None


def test_example_loads_and_equals_the_defaults():
    """Loading the example changes nothing: it documents the defaults."""
    assert load_settings(EXAMPLE).model_dump() == Settings().model_dump()


@pytest.mark.parametrize("section", ["ib", "notify", "monitor", "summary", "metrics", "web"])
def test_every_settings_key_is_in_the_example(section):
    """Each key of each top-level section appears in its section of the example."""
    body = sections(EXAMPLE.read_text())[section]
    model = type(getattr(Settings(), section))
    missing = [name for name in model.model_fields if not documented(body, name)]
    if section == "notify":
        missing.remove("targets")  # documented as [[notify.targets]] entries
        assert "[[notify.targets]]" in EXAMPLE.read_text()
    assert missing == []


@pytest.mark.parametrize("rule", [field.name for field in dataclasses.fields(RulesConfig)])
def test_every_rule_key_is_in_the_example(rule):
    """Each rule has its [rules.<id>] section listing every one of its keys."""
    body = sections(EXAMPLE.read_text())[f"rules.{rule}"]
    config = getattr(RulesConfig(), rule)
    missing = [
        field.name for field in dataclasses.fields(config) if not documented(body, field.name)
    ]
    assert missing == []
