VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: test test-long lint demo bench clean

# The venv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy canary workflows activities worker starter demo bench tests
	$(BIN)/lint-imports

test: $(VENV)/.installed lint
	./scripts/ensure-apt.sh prometheus prometheus
	./scripts/ensure-apt.sh chromium chromium
	$(BIN)/pytest

test-long: $(VENV)/.installed
	$(BIN)/pytest -m long

demo: $(VENV)/.installed
	./scripts/ensure-apt.sh prometheus prometheus
	$(BIN)/python -m demo

# Figures, apart from `make test` (which runs only a smoke of it); BENCH_ARGS=--long adds
# 1,000 rollouts at a 60 s interval.
bench: $(VENV)/.installed
	./scripts/ensure-apt.sh prometheus prometheus
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .coalmine .pytest_cache .mypy_cache .ruff_cache *.egg-info
