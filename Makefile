# The README's contract: `make serve` and `make test`. Everything is set up from this repository's own files.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.requirements-installed
NATIVE := python/licensor/_core.abi3.so
RUST_SOURCES := Cargo.toml Cargo.lock pyproject.toml $(wildcard rust/*.rs)
PYTEST := $(VPY) -m pytest -p no:cacheprovider

.PHONY: all build test test-rust test-native test-python stubtest bench serve clean

all: build

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

$(DEPS_STAMP): requirements-dev.txt | $(VPY)
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

# maturin develop builds the release extension into python/licensor/ and installs the package editable.
$(NATIVE): $(RUST_SOURCES) $(DEPS_STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet
	touch $@

build: $(NATIVE)

test: build test-rust test-native test-python stubtest

test-rust:
	cargo test --release --quiet

# The whole Python suite with the native core (tests on both cores where the fixture offers both) ...
test-native: build
	LICENSOR_EXPECT_IMPLEMENTATION=rust $(PYTEST) tests benches --benchmark-disable

# ... and again with the native module never loaded.
test-python: build
	LICENSOR_PURE_PYTHON=1 LICENSOR_EXPECT_IMPLEMENTATION=python $(PYTEST) tests benches --benchmark-disable

stubtest: build
	$(VPY) -m mypy.stubtest licensor._core --allowlist stubtest-allowlist.txt

bench: build
	$(PYTEST) benches --benchmark-only --benchmark-json=.bench/latest.json --benchmark-columns=median,iqr,rounds -q
	$(VPY) benches/ratios.py .bench/latest.json

serve:
	@echo "make serve arrives with the License Central issue (#3): there is no gateway yet." >&2
	@exit 2

clean:
	rm -rf $(VENV) target $(NATIVE) .bench
