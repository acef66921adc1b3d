# The two commands a newcomer runs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .state
CONFIG ?= examples/remediator.yaml

.PHONY: run test check lint typecheck bench system-deps clean docs

# What `make run` needs: the package and its runtime dependencies, not the dev tools.
$(VENV)/.runtime: pyproject.toml
	@scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

# What tests, checks and tools need besides: the dev extras (pytest, ruff, mypy, ...).
$(BIN)/pytest: pyproject.toml
	@scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.runtime

$(BIN)/remediator: $(BIN)/pytest
	@touch $@

$(STATE)/webhook-token $(STATE)/api-token:
	@mkdir -p $(STATE) && umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_hex(24))" > $@
	@echo "generated $@"

## run: start the daemon on SQLite with the shipped rules (Slack to the log)
run: $(VENV)/.runtime $(STATE)/webhook-token $(STATE)/api-token
	$(BIN)/remediator check --config $(CONFIG)
	$(BIN)/remediator serve --config $(CONFIG)

## test: install what the tests need (Python packages; Debian packages as root) and run them all
test: $(BIN)/remediator system-deps
	$(BIN)/pytest --durations=15

system-deps:
	@scripts/system-deps.sh

## bench: run every benchmark of issue 7 (under 10 minutes) and write bench/RESULTS.md
bench: $(BIN)/py-spy
	@scripts/bench-deps.sh
	$(BIN)/python -m bench.run

$(BIN)/py-spy: pyproject.toml $(BIN)/remediator
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

## check: ruff and mypy (strict)
check: lint typecheck

lint: $(BIN)/remediator
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/remediator
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(STATE) .pytest_cache .mypy_cache .ruff_cache

## docs: regenerate the shipped packs' on-call runbooks under docs/runbooks/ (a test checks them)
docs: $(BIN)/remediator $(STATE)/webhook-token $(STATE)/api-token
	$(BIN)/remediator docs --config $(CONFIG) --alert-rules alerting/prometheus/rules \
		--dashboard alerting/grafana/remediator.json --out docs/runbooks
