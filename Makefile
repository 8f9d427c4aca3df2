# One Makefile; CI calls these targets verbatim.
SHELL := /bin/bash
PY ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: venv sysdeps demo test lint unit bench clean fuzz reliability

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

# The venv is rebuilt whenever the lock file changes.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen -p $(PY) --all-extras -q
	touch $@

venv: $(VENV)/.synced

# Debian packages the tests need (a real PostgreSQL and Redis, Chromium for the UI tests) and wrk (bench/serving); installed only when root and missing.
sysdeps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing$$missing and not root: the tests that need them will be skipped"; fi; \
	fi

demo: venv
	$(BIN)/python -m loopml.demo

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q

test: venv sysdeps lint
	$(BIN)/pytest -q

# Longer runs than `make test` does: schemathesis with 100 examples per operation and mode, and
# 16 writers x 60 s per backend plus the kill -9 and fault-proxy tests (figures in RELIABILITY.md).
fuzz: venv
	LOOPML_FUZZ_EXAMPLES=100 $(BIN)/pytest -q -s --timeout=3600 tests/fuzz

reliability: venv sysdeps
	mkdir -p .bench
	LOOPML_RELIABILITY_FULL=1 LOOPML_RELIABILITY_WRITERS=16 LOOPML_RELIABILITY_SECONDS=60 \
	  LOOPML_RELIABILITY_REPORT=.bench/reliability.jsonl \
	  LOOPML_ATTACK_COUNTS_FILE=.bench/attack-counts.json \
	  $(BIN)/pytest -q -s --timeout=1800 tests/reliability tests/security

bench: venv
	$(BIN)/python bench/tracking/run.py
	$(BIN)/python bench/tracking/autolog.py
	$(BIN)/python bench/registry/cold_load.py
	$(BIN)/python bench/serving/run.py
	$(BIN)/python bench/drift/run.py
	$(BIN)/python bench/features/run.py
	$(BIN)/python bench/ui/run.py
	$(BIN)/python bench/pipelines/run.py

clean:
	rm -rf $(VENV) .tools .loopml .pytest_cache .mypy_cache .ruff_cache
