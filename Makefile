# The Durable Agents course kit. `make lab` runs the course, `make test` passes the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed-lab
DEV_STAMP := $(VENV)/.installed-dev
INSTALLER ?= auto
export VENV INSTALLER
NPM_STAMP := node_modules/.installed
# The trace viewer (Arize Phoenix, requirements/tracing.txt) lives in a venv of its own: its packages stay out of the
# lessons' lock. `make tracing` installs and starts it; `make lab TRACING=1` too.
TRACING_VENV ?= .venv-tracing
TRACING_STAMP := $(TRACING_VENV)/.installed-tracing
VIEWER_PORT ?= 6006
export TRACING_VENV
LAB_PORT ?= 8888
NB_TIMEOUT ?= 900
PYTEST_FLAGS ?=
# The suites run in parallel: TEST_WORKERS pytest-xdist workers, each with a server and agents of its own
# (tests/worker_lab.py), so `make test` never touches the lab's server. TEST_WORKERS=0 runs them one by one in
# one process, on the lab's server and agents (`make up`), as before.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist loadfile
# The tiers: `make test` (every change) leaves out the tests marked `full`; `make test-all` (CI's weekly schedule, a
# release) runs them too: the whole crash matrix, the lean-venv build, the bench's smoke run, the modes' meta-tests.
TEST_MARKERS ?= not full
MARKERS := $(if $(TEST_MARKERS),-m "$(TEST_MARKERS)")

.PHONY: help setup setup-dev setup-tracing tracing sync bundle lock server up lab test test-all test-fast test-modes test-gemini test-replay test-replay-lessons notebooks html doctor stop down clean reset reset-progress strip check-notebooks lint format bench reliability

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(PY_STAMP) $(NPM_STAMP) ## create .venv (Python >= 3.12), install the lessons' locked packages and the server

setup-dev: $(DEV_STAMP) $(NPM_STAMP) ## setup, plus the maintainers' test, lint and browser tools (requirements/dev.txt)

$(PY_STAMP): requirements/lab.txt scripts/python-deps scripts/find-python
	@scripts/python-deps install lab

$(DEV_STAMP): requirements/dev.txt requirements/lab.txt scripts/python-deps scripts/find-python
	@scripts/python-deps install dev

setup-tracing: $(TRACING_STAMP) ## install the trace viewer, Arize Phoenix (requirements/tracing.txt), into .venv-tracing/

$(TRACING_STAMP): requirements/tracing.txt scripts/python-deps scripts/find-python
	@VENV=$(TRACING_VENV) scripts/python-deps install tracing

tracing: setup setup-tracing ## install the trace viewer and start it: Phoenix on port 6006 (VIEWER_PORT); make stop stops it
	$(PY) -m agent_lib viewer --port $(VIEWER_PORT)

sync: ## put .venv back to exactly its lock (after a pip install or upgrade by hand, say)
	@scripts/python-deps install lab

WHEELHOUSE ?=
BUNDLE_FOR ?= this
export WHEELHOUSE BUNDLE_FOR
bundle: ## (instructors) the lab lock's wheels for an offline room into wheelhouse/ (BUNDLE_FOR="this macos-arm64-3.12 ...")
	@WHEELHOUSE=$${WHEELHOUSE:-wheelhouse} scripts/python-deps bundle

lock: ## (maintainers) re-resolve the locks requirements/*.txt from the pins in requirements/*.in (UPGRADE=1: newest)
	@scripts/python-deps lock

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18 or newer (it brings npm), then run make again" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

doctor: setup ## check Python, packages, server binary, ports and model
	$(PY) -m agent_lib doctor

server: setup ## start the Restate server (ingress 8080, admin and UI 9070, data in .restate/)
	$(PY) -m agent_lib server

up: setup ## start the server and register the finished agents
	$(PY) -m agent_lib up

.PHONY: keys
keys: setup ## make the key pair the server signs its requests with, if missing (in .restate/identity/; ROTATE=1: a new one)
	$(PY) -m agent_lib keys $(if $(ROTATE),--rotate)

lab: up $(if $(TRACING),tracing) ## set up, start everything and open JupyterLab on notebooks/ (TRACING=1: the trace viewer too)
	@token=$$($(PY) -c 'import secrets; print(secrets.token_hex(16))'); \
	$(PY) -c 'import sys; from agent_lib.clients import forwarded_url, ui_url; \
	  print(f"\n  JupyterLab:  {forwarded_url(sys.argv[1])}\n  Restate UI:  {ui_url()}")' \
	  "http://127.0.0.1:$(LAB_PORT)/lab?token=$$token"; \
	echo "  (Ctrl-C stops JupyterLab; make stop stops Restate and the agents)"; echo; \
	exec $(PY) -m jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	  --IdentityProvider.token=$$token --ServerApp.root_dir=notebooks --LabApp.news_url=None \
	  $$([ "$$(id -u)" = 0 ] && echo --ServerApp.allow_root=True)

test: $(DEV_STAMP) setup $(if $(filter 0,$(TEST_WORKERS)),up) ## what every change must pass: the unit tests, the proof suite's core, every lesson and solution, then the lessons on Gemini's path with replays
	$(PY) -m pytest $(XDIST) $(MARKERS) --nbmake --nbmake-timeout=$(NB_TIMEOUT) --durations=30 $(PYTEST_FLAGS) tests notebooks
	@$(MAKE) --no-print-directory test-modes

test-all: ## (weekly, before a release) make test with nothing left out (the trace viewer's test too), then the always-replay mode
	@$(MAKE) --no-print-directory setup-tracing
	@KIT_TEST_ALL=1 $(MAKE) --no-print-directory test TEST_MARKERS=
	@$(MAKE) --no-print-directory test-replay

LESSONS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# The finished agents' own tests (tests marked `agent`, found by grep): replay mode runs them, so a new agent's tests
# join it by their marker, not by a hand-kept list.
AGENT_TESTS = $(shell grep -l "pytest.mark.agent\b" tests/test_*.py)
LESSON_MODE := $(PY) scripts/lesson_mode.py

test-modes: $(DEV_STAMP) setup ## the lessons again in one pass on Gemini's path AND a server that replays at every await (own ports; scripts/prove_modes.py shows it catches what both modes catch apart)
	$(LESSON_MODE) --name modes --gemini-stub --env RESTATE_ALWAYS_REPLAY=1 -- \
	  $(XDIST) --nbmake --nbmake-timeout=$(NB_TIMEOUT) --durations=15 $(PYTEST_FLAGS) $(LESSONS)

test-gemini: $(DEV_STAMP) setup ## the lessons again on the real Gemini code path, against a local Gemini stub (own ports)
	$(LESSON_MODE) --name gemini --gemini-stub -- \
	  $(XDIST) --nbmake --nbmake-timeout=$(NB_TIMEOUT) --durations=10 $(PYTEST_FLAGS) $(LESSONS)

test-replay: $(DEV_STAMP) setup ## the lessons and the finished agents' tests on a server that replays at every await (own ports)
	$(LESSON_MODE) --name replay --env RESTATE_ALWAYS_REPLAY=1 -- \
	  $(XDIST) --nbmake --nbmake-timeout=$(NB_TIMEOUT) --durations=15 $(PYTEST_FLAGS) $(AGENT_TESTS) $(LESSONS)

test-replay-lessons: $(DEV_STAMP) setup ## the lessons only, on a server that replays at every await
	$(LESSON_MODE) --name replay --env RESTATE_ALWAYS_REPLAY=1 -- \
	  $(XDIST) --nbmake --nbmake-timeout=$(NB_TIMEOUT) --durations=15 $(PYTEST_FLAGS) $(LESSONS)

test-fast: $(DEV_STAMP) setup ## the unit tests only (they start private servers of their own)
	$(PY) -m pytest $(XDIST) tests -m "not browser and not full"

notebooks: $(DEV_STAMP) setup up ## execute every notebook with nbmake
	$(PY) -m pytest --nbmake --nbmake-timeout=$(NB_TIMEOUT) notebooks

html: setup up ## execute every lesson and export it, with its outputs, to site/ (open site/index.html)
	$(PY) scripts/build_site.py --out site

stop: ## stop the server and agent processes the kit started
	@if [ -x $(PY) ]; then $(PY) -m agent_lib down; fi

down: stop

clean: stop ## stop everything and delete the server's data (.restate/), keeping your exercise progress
	@if [ -d .restate ]; then find .restate -mindepth 1 -maxdepth 1 ! -name progress.jsonl -exec rm -rf {} +; fi
	@echo "Deleted the server's data in .restate/ (kept .restate/progress.jsonl, your passed exercises)."

reset: clean ## between workshop sessions: stop every process the kit started (by recorded pid) and wipe .restate/ (progress is kept)
	@echo "Reset: no kit process runs and the server's data is gone. 'make lab' starts afresh."
	@echo "Your exercise progress is kept; 'make reset-progress' deletes it too (e.g. before the next learner)."

reset-progress: setup ## delete the record of passed exercises (make reset keeps it)
	$(PY) -m agent_lib progress --clear

BENCH_FLAGS ?=
bench: setup ## measure durability's cost against plain ADK -> docs/PERFORMANCE.md, docs/img/ (BENCH_FLAGS=--notebooks)
	$(PY) bench/run.py $(BENCH_FLAGS)

reliability: $(DEV_STAMP) setup ## the proof suite (crash matrix, restarts, node loss, bad input, security) -> docs/RELIABILITY.md
	$(PY) -m pytest tests/proof tests/test_cluster.py::test_killing_a_node_loses_no_invocation_and_it_rejoins --reliability-report docs/RELIABILITY.md

strip: setup ## strip outputs from every notebook
	$(PY) scripts/strip_notebooks.py notebooks

check-notebooks: setup ## fail if a notebook has outputs or lacks kernelspec metadata
	$(PY) scripts/strip_notebooks.py --check notebooks

lint: $(DEV_STAMP) ## ruff (checks and format) and mypy
	$(PY) -m ruff check agent_lib tests scripts bench notebooks
	$(PY) -m ruff format --check agent_lib tests scripts bench
	$(PY) -m mypy agent_lib

format: $(DEV_STAMP) ## format the code with ruff
	$(PY) -m ruff format agent_lib tests scripts bench
