# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
# `make test-fast` is the edit loop: everything but the tests marked slow, in under 20 s.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint bench clean venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/margin-monitor demo

test: venv
	$(BIN)/python -m ruff check monitor rules tests bench
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

# Two workers: each pays the imports (ib_async, pandas, matplotlib) once, and more than the
# machine's two CPUs cost more in imports than they win in overlapped loopback waits.
test-fast: venv
	$(BIN)/python -m ruff check monitor rules tests bench
	$(BIN)/python -m mypy
	MARGIN_MONITOR_QUICK_PROPERTIES=1 $(BIN)/python -m pytest -q -n 2 -m "not slow"

bench: venv
	$(BIN)/python bench/connect_first_eval.py
	$(BIN)/python bench/rules_throughput.py
	$(BIN)/python bench/detection_latency.py
	$(BIN)/python bench/soak_memory.py
	$(BIN)/python bench/fault_delivery.py
	$(BIN)/python bench/web_page.py
	$(BIN)/python bench/cli_start.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
