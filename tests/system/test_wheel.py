"""The built wheel carries what the installed commands read: ``config example`` prints
config.example.toml from the package, not from a checkout that a pip user does not have; and
its metadata says what the package is (SPDX licence with the LICENSE file, URLs,
classifiers), built without a deprecation warning."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_config_example_comes_from_the_wheel(tmp_path):
    """A wheel built offline from a copy of the sources holds monitor/config.example.toml
    (the file itself, not a link) equal to the repository's; unpacked alone on sys.path,
    ``margin-monitor config example`` prints it from there."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "config.example.toml"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("monitor", "rules"):
        shutil.copytree(ROOT / package, source / package, symlinks=True, ignore=ignore)
    built = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--verbose", "--wheel-dir", str(tmp_path / "dist"), str(source),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    # The build backend's own output (shown with --verbose) has no deprecation warning: the
    # SPDX license string and license-files need setuptools >= 77, which pyproject requires.
    backend = built.stdout + built.stderr
    assert "Building wheel for ibkr-margin-monitor" in backend
    assert "deprecat" not in backend.lower(), backend
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    expected = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("ibkr_margin_monitor-0.1.0.dist-info/METADATA").decode()
        lines = metadata.splitlines()
        assert "License-Expression: MIT" in lines and "License-File: LICENSE" in lines
        assert any(line.startswith("Project-URL: Source, https://") for line in lines)
        assert any(line.startswith("Classifier: Topic :: ") for line in lines)
        licence = archive.read("ibkr_margin_monitor-0.1.0.dist-info/licenses/LICENSE")
        assert licence == (ROOT / "LICENSE").read_bytes()
        assert archive.read("monitor/config.example.toml").decode("utf-8") == expected
        archive.extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked"
    code = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r})\n"
        "import monitor\n"
        f"assert monitor.__file__.startswith({str(unpacked)!r}), monitor.__file__\n"
        "from monitor.cli import main\n"
        "raise SystemExit(main(['config', 'example']))\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == expected
