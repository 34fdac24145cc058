# The README's contract: `make serve` and `make test`. Everything is set up from this repository's own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
VPIP := $(VENV)/bin/pip
MATURIN := $(VENV)/bin/maturin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEPS_STAMP := $(VENV)/.requirements-installed
PLUGINS_STAMP := $(VENV)/.plugins-installed
PLUGINS := $(wildcard plugins/*)
PLUGIN_TESTS := $(wildcard plugins/*/tests)
NATIVE := python/licensor/_core.abi3.so
RUST_SOURCES := Cargo.toml Cargo.lock pyproject.toml $(wildcard rust/*.rs)
PYTEST := $(VPY) -m pytest -p no:cacheprovider
# Each pass: the tests that own their state (their PostgreSQL, ports, directories) three at a time on the two
# cores (pytest-xdist; with two workers the cores were busy 1.3 of 2 on average, the tests waiting on their
# servers, subprocesses and sockets the rest: three cut the native pass's parallel part from 427 to 373 s),
# then the few marked `alone`, whose figures need the machine to themselves, one at a time.
# worksteal: a worker that runs out takes tests queued for the other (with plain load scheduling both
# schemathesis runs, neighbours in the collection, went to one worker: 831 s there while the other idled).
SUITES := tests $(PLUGIN_TESTS) benches --benchmark-disable
PARALLEL := -n 3 --dist worksteal -m "not alone" --durations=25
ALONE := -m alone --durations=25
TEST_REPORT := $(VENV)/test-report.txt
STAGE := .ci/stage $(TEST_REPORT)
# make test runs the cloud soak for 8 s; make soak for the full minute.
SOAK_SECONDS ?= 60
# make serve: where the gateway listens and keeps its data (make serve PORT=18080 when 8080 is taken).
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= var
SERVE := env PYTHONPATH=$(CURDIR)/python $(VPY) -m licensor.cli serve --init-if-empty --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)
BUILD_LOG := $(VENV)/native-build.log
# make wheels: the five distributions as wheels, in one directory (docs/install.md). Rebuilt when a file of theirs
# changes; tests/test_packaging.py installs them into a clean virtualenv.
WHEELS := $(VENV)/wheels
WHEELS_STAMP := $(WHEELS)/.built
DISTRIBUTION_FILES := README.md clients/python/README.md clients/python/pyproject.toml $(shell find python/licensor clients/python/licensor_client \
	plugins/*/licensor_* plugins/*/pyproject.toml -type f -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

.PHONY: all build wheels postgres-server chromium test check lint test-rust test-native test-python stubtest coverage-proof fuzz soak bench serve clean

all: build

# A current pip in a venv made without one: ensurepip takes 5-15 s on 2 cores, and the bundled pip 23 spends
# about 30 s of CPU matching our dependencies' wheel files, a current pip about 6 s. The outer pip installs it
# (pip --python); ensurepip is the fallback where that pip is missing or too old.
$(VPY):
	$(PYTHON) -m venv --without-pip $(VENV)

$(VPIP): | $(VPY)
	$(PYTHON) -m pip --python $(VPY) install -q --upgrade pip 2>/dev/null || \
		{ $(VPY) -m ensurepip --upgrade >/dev/null && $(VPY) -m pip install -q --upgrade pip; }

# The runtime dependencies (requirements.txt): what the gateway needs to run ...
$(RUNTIME_STAMP): requirements.txt | $(VPIP)
	$(VPY) -m pip install -q -r requirements.txt
	touch $@

# ... the client distribution (clients/python, a dependency of licensor) and the first-party backends, each its
# own distribution installed editable (a backend found through its entry point, as a third party's would be);
# --no-deps, since their dependencies are this repository's and requirements.txt's ...
$(PLUGINS_STAMP): $(wildcard plugins/*/pyproject.toml) clients/python/pyproject.toml | $(VPIP)
	$(VPY) -m pip install -q --no-deps -e clients/python $(foreach plugin,$(PLUGINS),-e $(plugin))
	touch $@

# ... maturin, to build the native core (the version pinned in requirements-dev.txt) ...
$(MATURIN): | $(VPIP)
	$(VPY) -m pip install -q "$$(grep -E '^maturin==' requirements-dev.txt)"

# ... and the tools of make test and make bench.
$(DEPS_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

# maturin develop builds the release extension into python/licensor/ and installs the package editable.
$(NATIVE): $(RUST_SOURCES) $(RUNTIME_STAMP) $(PLUGINS_STAMP) | $(MATURIN)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet
	touch $@

build: $(NATIVE) $(DEPS_STAMP) $(PLUGINS_STAMP)

# licensor's wheel (abi3, the native core inside) from the crate `maturin develop` compiled (a second or two when
# current; about 15 s after a change of the Rust sources), and the pure-Python ones of the client and the
# plugins (flit_core from requirements-dev.txt, so no build environment is downloaded).
$(WHEELS_STAMP): $(NATIVE) $(DEPS_STAMP) $(DISTRIBUTION_FILES)
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	VIRTUAL_ENV=$(abspath $(VENV)) $(MATURIN) build --release --quiet --out $(WHEELS)
	$(VPY) -m pip wheel -q --no-deps --no-build-isolation -w $(WHEELS) clients/python $(PLUGINS)
	touch $@

wheels: $(WHEELS_STAMP)

# The store tests start a private PostgreSQL server (licensor.testing.ThrowawayPostgres), so PostgreSQL's
# server binaries must be installed: from Debian when initdb is missing (run as root; no prompts). Installing
# the package may start Debian's own cluster too; that is harmless, the tests use a cluster of their own.
postgres-server:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; else \
		echo "installing PostgreSQL's server (apt-get install postgresql)" >&2; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	fi

# The portal's browser tests drive Debian's Chromium through Playwright (from PyPI, which never downloads a browser
# here): installed from Debian when missing, as PostgreSQL is (about 40 s, once).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; else \
		echo "installing Chromium (apt-get install chromium)" >&2; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Every stage timed; the table of wall times ends the output (also when a stage fails).
test:
	@mkdir -p $(VENV) && rm -f $(TEST_REPORT)
	@$(STAGE) "build" $(MAKE) --no-print-directory build wheels postgres-server chromium
	@$(STAGE) "lint" $(MAKE) --no-print-directory lint
	@$(STAGE) "cargo test" $(MAKE) --no-print-directory test-rust
	@$(STAGE) "native pass" $(MAKE) --no-print-directory test-native
	@$(STAGE) "pure-Python pass" $(MAKE) --no-print-directory test-python
	@$(STAGE) "stubtest" $(MAKE) --no-print-directory stubtest
	@echo "make test: wall time per stage"; cat $(TEST_REPORT)

test-rust:
	cargo test --release --quiet

# ruff (lint and format), mypy (pyproject.toml: strict on the modules plugin authors use), clippy and rustfmt.
# clippy checks the crate as cargo test builds it and as maturin does (with the PyO3 bindings).
lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cargo fmt --check
	cargo clippy --release --quiet --all-targets -- -D warnings
	cargo clippy --release --quiet --all-targets --features python -- -D warnings

# The quick loop while working: lint, then the tests that need no server process (no store, gateway or
# licensor serve), on both cores at once. Not a substitute for make test.
check: build
	$(MAKE) --no-print-directory lint
	$(PYTEST) tests $(PLUGIN_TESTS) benches --benchmark-disable -n 2 --dist worksteal -m "not server and not alone" -q

# The whole Python suite with the native core (the core fixture's tests on rust only: the pure-Python pass
# runs them on python; the twins compared side by side; the schemathesis run at 80 examples per operation and
# 40 stateful scenarios: make fuzz runs 1000 and 400) ...
NATIVE_PASS := LICENSOR_EXPECT_IMPLEMENTATION=rust LICENSOR_TEST_CORES=rust LICENSOR_SOAK_SECONDS=8
test-native: build postgres-server
	$(NATIVE_PASS) $(PYTEST) $(SUITES) $(PARALLEL)
	$(NATIVE_PASS) $(PYTEST) $(SUITES) $(ALONE)

# ... and, with the native module never loaded, the tests whose outcome can depend on the core (--twin-pass,
# conftest.py: on SQLite, and not the modules that never reach the core; the schemathesis run once is enough).
PYTHON_PASS := LICENSOR_PURE_PYTHON=1 LICENSOR_EXPECT_IMPLEMENTATION=python LICENSOR_SOAK_SECONDS=8
test-python: build postgres-server
	$(PYTHON_PASS) $(PYTEST) $(SUITES) --ignore=tests/fuzz --twin-pass $(PARALLEL)
	$(PYTHON_PASS) $(PYTEST) $(SUITES) --ignore=tests/fuzz --twin-pass $(ALONE)

# The proof that --twin-pass leaves nothing of the core out: the pure-Python pass in full and as make test runs
# it, each under coverage.py (its subprocesses too), and every line of licensor/_fallback.py and of each module
# that imports licensor._impl run by the full pass must be run by the reduced one (about 12 minutes).
coverage-proof: build postgres-server
	$(PYTHON_PASS) $(VPY) .ci/coverage-proof $(SUITES) --ignore=tests/fuzz

# The cloud backend's soak at full length (a minute of devices coming and going on both stores), the seat races and the
# worker kills of issue 18 at full length, and retention after a day of 100,000 real heartbeats (make test sends 300 and writes the rest of the day in bulk; 4-8 minutes per
# store here).
RETENTION_HEARTBEATS ?= 100000
# Issue 18's acceptance at full length: 20 rounds of 1,000 requests at once against 5 seats of each kind (make test: 1),
# 20 kill -9 of a worker during bursts (make test: 3), and 300 changes seen across 3 hosts (make test: 30); and the
# database going away under load (tests/gateway/test_failover.py): a primary stopped hard and its standby promoted, and
# a single PostgreSQL stopped hard and restarted, FAILOVER_RUNS times each (make test: once), printing the table of
# figures (about 15 s a run).
SEAT_RACE_ROUNDS ?= 20
WORKER_KILLS ?= 20
FAILOVER_RUNS ?= 5
soak: build postgres-server
	LICENSOR_SOAK_SECONDS=$(SOAK_SECONDS) $(PYTEST) --timeout=0 plugins/licensor-cloud/tests/test_cloud_concurrency.py -k soak -s
	LICENSOR_SEAT_RACE_ROUNDS=$(SEAT_RACE_ROUNDS) LICENSOR_WORKER_KILLS=$(WORKER_KILLS) LICENSOR_HOST_CHANGE_ROUNDS=50 \
		$(PYTEST) --timeout=0 tests/gateway/test_seat_races.py tests/gateway/test_serve.py tests/gateway/test_hosts.py \
		-k "seats or killed or within_1_s" -s
	LICENSOR_FAILOVER_RUNS=$(FAILOVER_RUNS) $(PYTEST) --timeout=0 tests/gateway/test_failover.py -s
	LICENSOR_RETENTION_HEARTBEATS=$(RETENTION_HEARTBEATS) $(PYTEST) --timeout=0 plugins/licensor-cloud/tests/test_cloud_retention.py -k after_a_day -s

stubtest: build
	$(VPY) -m mypy.stubtest licensor._core --allowlist stubtest-allowlist.txt

# `make test` runs schemathesis against the live gateway's /openapi.json once (tests/fuzz, in the native pass:
# every operation, 80 examples each, and 40 stateful scenarios of up to 8 calls that follow the document's links, on
# SQLite, without Hypothesis's target phase). `make fuzz` is the deeper local run: the same test alone with 1000
# examples per operation, 400 stateful scenarios of up to 12 calls and the target phase (inputs steered towards
# what each operation accepts), on both stores, printing what each operation answered.
# The coverage-guided fuzz targets (atheris: tests/fuzz/targets.py, for the token, license-file, credential-file
# and request-file parsers, each on both cores, compared) run 2 s each in make test, $(ATHERIS_SECONDS) s each here,
# their corpus kept in $(VENV)/fuzz-corpus between runs (a crash leaves its input there as artifacts/TARGET-crash-*).
FUZZ_EXAMPLES ?= 1000
ATHERIS_SECONDS ?= 120
fuzz: build postgres-server
	LICENSOR_ATHERIS_SECONDS=$(ATHERIS_SECONDS) LICENSOR_ATHERIS_CORPUS=$(abspath $(VENV))/fuzz-corpus \
	LICENSOR_FUZZ_STATEFUL_SCENARIOS=400 LICENSOR_FUZZ_STATEFUL_STEPS=12 \
	LICENSOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LICENSOR_FUZZ_STORES=sqlite,postgresql LICENSOR_FUZZ_TARGETED=1 $(PYTEST) --timeout=0 tests/fuzz -s

# The report (the tables and .bench/report.png) ends the run even when a benchmark failed its own assert; the
# status is then the benchmarks' failure, else the tables'.
bench: build
	$(PYTEST) --timeout=0 benches --benchmark-only --benchmark-json=.bench/latest.json --benchmark-columns=median,iqr,rounds -q; \
	status=$$?; \
	$(VPY) benches/plot.py .bench/latest.json .bench/report.png; \
	tables=0; $(VPY) benches/ratios.py .bench/latest.json || tables=$$?; \
	[ $$status -ne 0 ] || status=$$tables; \
	exit $$status

# The gateway on $(HOST):$(PORT) with the embedded SQLite store in $(DATA_DIR)/; on first start it creates the tenant
# "default" and writes its admin token to $(DATA_DIR)/admin-token. When the native core is built and current, it
# starts on it at once. Otherwise (a fresh clone: its release build takes 1-2 minutes on 2 cores) it builds it in
# the background, serves meanwhile on the pure-Python core (same answers, slower crypto; it says so), and
# restarts on the native core once built. Ctrl-C or SIGTERM stops the gateway and any build still running.
serve: $(RUNTIME_STAMP) $(PLUGINS_STAMP)
	@if $(MAKE) -s -q $(NATIVE) 2>/dev/null; then exec $(SERVE); fi; \
	echo "licensor: building the native core in the background (1-2 minutes; log: $(BUILD_LOG))"; \
	echo "licensor: meanwhile the gateway serves on the pure-Python core; it restarts on the native core when built"; \
	setsid nice -n 10 $(MAKE) -s $(NATIVE) >$(BUILD_LOG) 2>&1 </dev/null & build=$$!; \
	setsid env LICENSOR_PURE_PYTHON=1 $(SERVE) </dev/null & server=$$!; \
	stop() { kill -TERM $$server 2>/dev/null; kill -TERM -- -$$build 2>/dev/null; wait; exit $$1; }; \
	trap 'stop 130' INT; trap 'stop 143' TERM; \
	wait -n -p done $$build $$server; status=$$?; \
	if [ "$$done" = "$$server" ]; then kill -TERM -- -$$build 2>/dev/null; wait; exit $$status; fi; \
	if [ $$status -ne 0 ]; then \
		echo "licensor: the native core could not be built (see $(BUILD_LOG)): the gateway stays on the pure-Python core" >&2; \
		wait $$server; exit $$?; \
	fi; \
	echo "licensor: the native core is built: restarting the gateway on it"; \
	kill -TERM $$server; wait $$server; trap - INT TERM; exec $(SERVE)

clean:
	rm -rf $(VENV) target $(NATIVE) .bench
