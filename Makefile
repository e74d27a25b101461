# Edge ML platform — `make help` lists targets. `make check` is exactly what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with dev tools

demo: $(STAMP) ## The main job: broker, worker, simulator, live alerts, web page URL
	$(BIN)/edgeml demo

test: $(STAMP) ## All tests: unit, agents, integration (own Kafka broker); fails below 90% coverage
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=90 --durations=25

test-unit: $(STAMP) ## Unit and agent tests only (no broker)
	$(BIN)/pytest tests/unit tests/agents

lint: $(STAMP) ## ruff (lint + format check), mypy, and the import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: lint test ## What CI runs

broker-up: $(STAMP) ## Start the local Kafka broker (fetched from Maven Central on first use)
	$(BIN)/edgeml broker up

broker-down: $(STAMP) ## Stop the local Kafka broker
	$(BIN)/edgeml broker down

bench: $(STAMP) ## Run all benchmarks (needs `make broker-up`) and print figures
	$(BIN)/python -m bench

faults: $(STAMP) ## Fault scenarios R1-R4 of issue #9 at full size (own broker; ~15 min)
	$(BIN)/python -m bench.faults

faults-ci: $(STAMP) ## The reduced fault run CI does (R1 one kill, R1d, R4 at 3,000 readings)
	$(BIN)/pytest -q -p no:cacheprovider tests/integration/test_faults.py

edge-r10: $(STAMP) ## Edge agent R10 of issue #13 at full size: 50,000 readings, 20 devices, kill -9 offline and mid-sync (own broker)
	EDGEML_TEST_EDGE_R10_COUNT=2500 $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_edge_agent.py -k offline_scoring

openvino-venv: $(STAMP) ## The side venv with onnxruntime-openvino (.cache/venv-openvino, ~440 MB)
	$(BIN)/python -m edgeml.infra.venvs openvino

providers: openvino-venv ## Scores, node placement and latency per execution provider (CPU, OpenVINO)
	PYTHONPATH=. .cache/venv-openvino/bin/python bench/providers.py --providers openvino

clean: ## Remove caches and local state (not the Kafka download)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install demo test test-unit lint format check broker-up broker-down bench faults faults-ci edge-r10 openvino-venv providers clean
