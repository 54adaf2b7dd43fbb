# The two README commands: `make demo` and `make test`. Both bootstrap on first use.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PREFECT_HOME ?= $(CURDIR)/.prefect
PYTEST_ARGS ?=
# One pytest worker per core, at most 4 (each test worker has its own Prefect database).
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist worksteal

.PHONY: venv demo test lint format install-fan bench clean

venv:
	@scripts/bootstrap.sh

# One local Prefect server for all stages (each would otherwise start its own temporary one).
demo: venv
	scripts/with_prefect_server.sh dvc repro
	@eamm summary

test: venv
	ruff check .
	ruff format --check .
	python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: venv
	ruff check .
	ruff format --check .

format: venv
	ruff format .
	ruff check --fix .

# Optional FAN landmark backend; keeps opencv-contrib-python as the only cv2 provider.
install-fan: venv
	@scripts/install_fan.sh $(VENV)/bin/python

# Benchmarks (needs the bench extra: pip install -e '.[bench]'): about 26 minutes on 2 cores;
# writes benchmarks/results/*.json and docs/performance.md.
bench: venv
	python benchmarks/run_all.py

clean:
	rm -rf data/sample .prefect
