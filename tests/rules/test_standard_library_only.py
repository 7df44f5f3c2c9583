"""rules/ runs on the standard library alone: typing-only imports stay behind TYPE_CHECKING."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "rules"

PROBE = """
import importlib, json, pkgutil, sys, sysconfig
sys.modules["typing_extensions"] = None  # importing it would raise ImportError
before = set(sys.modules)
import rules
for info in pkgutil.walk_packages(rules.__path__, "rules."):
    importlib.import_module(info.name)
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
def outside(name):
    path = getattr(sys.modules[name], "__file__", None) or ""
    return bool(path) and (not path.startswith(stdlib) or "-packages" in path)
loaded = set(sys.modules) - before
print(json.dumps(sorted(n for n in loaded if n.partition(".")[0] != "rules" and outside(n))))
"""


def test_every_rules_module_imports_with_the_standard_library_alone():
    """A fresh interpreter imports every module of rules/ with typing_extensions unavailable,
    and loads no module outside the standard library."""
    modules = sorted(path.stem for path in RULES.rglob("*.py"))
    assert "model" in modules and "cushion" in modules  # the probe has something to import
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
