# The two set-up commands of the README: `make demo` and `make test`. Both work on a fresh Debian machine:
# they install what is missing (venv, Debian packages) and reuse services already running.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LANDMARKS := $(BIN)/landmarks
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Hashed pins (`make lock` writes them again from pyproject.toml): pip itself, every dependency with the dev extra
# (installed --no-deps: the lock is the whole resolution) and the packages installed without their declared
# dependencies (celery-batches 0.11 asks for celery<5.7; 5.7.0 is the release that survives a Redis restart).
LOCKS := requirements/pip.txt requirements/lock.txt requirements/no-deps.txt

# Debian packages the demo and the tests use: sample photos (gcompris-qt-data) and a headless browser.
DEBS_DEMO := gcompris-qt-data
DEBS_TEST := gcompris-qt-data chromium

.PHONY: venv demo test lint lock services stop proto debs-demo debs-test

$(STAMP): pyproject.toml $(LOCKS)
	@command -v $(PY) >/dev/null || { echo "python3 is required"; exit 1; }
	@$(PY) -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements/pip.txt
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements/lock.txt
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements/no-deps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

services: venv
	$(LANDMARKS) dev up --only postgres,redis,s3
	$(LANDMARKS) db upgrade

# Sets up everything and runs the main job on sample data: a gallery of monuments from Debian's gcompris-qt-data,
# a model built from it, photos uploaded for two users, and the albums the workers built for them.
debs-demo debs-test: debs-%:
	@missing=$$(for p in $(DEBS_$(shell echo $* | tr a-z A-Z)); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

demo: venv debs-demo
	$(LANDMARKS) dev up --only postgres,redis,s3
	$(LANDMARKS) db upgrade
	$(LANDMARKS) dev up
	$(LANDMARKS) demo run

test: venv debs-test
	$(LANDMARKS) dev up --only postgres,redis,s3
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(LANDMARKS) db upgrade
	$(LANDMARKS) db check
	$(BIN)/pytest $(PYTEST_ARGS)

# After a change to pyproject.toml's dependencies (tests/unit/test_lock.py fails until the lock satisfies it).
lock:
	PY=$(PY) bash requirements/lock.sh

proto: venv
	$(BIN)/python -m workers.bridge.sources.proto.generate

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

stop: venv
	$(LANDMARKS) dev down
