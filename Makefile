# visio-media — build, test, lint, bench, serve.
#
# Every user-facing target does its own set-up (`setup`): Debian packages, a Python venv with
# the pinned dev requirements, and the Rust extension built into that venv. Set-up is stamped,
# so a rerun with nothing changed costs well under a second.
#
#   make test    set-up, lint, cargo test, pytest over tests/
#   make serve   set-up, then run the server (python -m visio_media serve)
#   make bench   set-up, cargo bench, pytest-benchmark over benches/
#   make lint    set-up, rustfmt, clippy, ruff, mypy --strict, stubtest

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

# ---- knobs --------------------------------------------------------------------------------
VENV ?= $(HOME)/.cache/visio-media/venv
PYTHON ?= python3.11
PY := $(VENV)/bin/python
CARGO ?= cargo
CARGO_TARGET_DIR ?= $(HOME)/.cache/visio-media/target
export CARGO_TARGET_DIR
# The same interpreter for maturin, cargo test, clippy and bench, so pyo3 is built once per profile.
export PYO3_PYTHON := $(PY)

PYTEST_ARGS ?=
SERVE_ARGS ?= --dev

# Debian packages the build and the tests need. util-linux gives `unshare`, iproute2 gives `ip`
# (browser tests run in a network namespace with only `lo`), chromium is the browser under test,
# libopus-dev/pkg-config/cmake/clang build the native deps. python3-venv lets Debian's python3.11
# create venvs too; fonts-liberation gives headless Chromium readable text in screenshots.
APT_PACKAGES := chromium libopus-dev pkg-config iproute2 util-linux cmake clang \
                python3-venv fonts-liberation prometheus
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Stamps that describe this work tree live in it (a fresh clone re-checks them); the requirements
# stamp lives in the venv and is keyed by the content of requirements-dev.txt.
STAMPS := .stamps
REQ_HASH := $(shell sha256sum requirements-dev.txt 2>/dev/null | cut -c1-16)
REQ_STAMP := $(VENV)/.visio-media-requirements-$(REQ_HASH)
NATIVE_STAMP := $(STAMPS)/native
RUST_INPUTS := $(shell find rust -name target -prune -o \
                 \( -name '*.rs' -o -name Cargo.toml -o -name build.rs \) -print 2>/dev/null) \
               rust/Cargo.lock

# Library directory of the venv's interpreter (libpython), for test binaries that link it.
PY_LIBDIR = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
WITH_LIBPYTHON = LD_LIBRARY_PATH="$(PY_LIBDIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}"

# Does the venv import visio_media (and its extension) from *this* work tree? The venv is shared
# between clones, so a stamp alone cannot tell.
define CHECK_NATIVE
import importlib.util, os, sys
spec = importlib.util.find_spec("visio_media")
here = os.path.realpath("python/visio_media/__init__.py")
if spec is None or spec.origin is None or os.path.realpath(spec.origin) != here:
    sys.exit(1)
import visio_media._native
endef
export CHECK_NATIVE

.PHONY: help setup apt venv deps native test lint serve bench clean distclean

help:
	@echo "make serve   set-up, then run the server"
	@echo "make test    set-up, lint, cargo test, pytest over tests/"
	@echo "make bench   set-up, cargo bench, pytest-benchmark over benches/"
	@echo "make lint    set-up, cargo fmt --check, clippy, ruff, mypy --strict, stubtest"
	@echo "make setup   only the set-up (apt packages, venv at $(VENV), extension build)"
	@echo "make clean   drop this tree's stamps and built extension (venv and target stay)"

# ---- set-up -------------------------------------------------------------------------------
setup: $(NATIVE_STAMP)
	@if ! $(PY) -c "$$CHECK_NATIVE" 2>/dev/null; then \
	  echo "setup: the venv's visio_media is not this tree's build; rebuilding"; \
	  rm -f $(NATIVE_STAMP); \
	  $(MAKE) --no-print-directory $(NATIVE_STAMP); \
	  $(PY) -c "$$CHECK_NATIVE"; \
	fi

apt: $(STAMPS)/apt
venv: $(PY)
deps: $(REQ_STAMP)
native: $(NATIVE_STAMP)

$(STAMPS):
	@mkdir -p $@

# Installs only the packages dpkg does not report as installed ("ii").
$(STAMPS)/apt: Makefile | $(STAMPS)
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

$(PY): | $(STAMPS)/apt
	$(PYTHON) -m venv $(VENV)

$(REQ_STAMP): | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@rm -f $(VENV)/.visio-media-requirements-*
	@touch $@

# `maturin develop` builds the release extension, puts it next to python/visio_media/ and installs
# the package into the venv in editable mode (Python edits need no rebuild).
$(NATIVE_STAMP): $(RUST_INPUTS) pyproject.toml $(REQ_STAMP) | $(STAMPS)/apt $(STAMPS)
	VIRTUAL_ENV=$(VENV) PATH="$(VENV)/bin:$$PATH" \
	  $(VENV)/bin/maturin develop --release --locked
	@touch $@

# ---- targets ------------------------------------------------------------------------------
lint: setup
	cd rust && $(CARGO) fmt --all --check
	cd rust && $(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(PY) -m ruff check $(wildcard python tests benches)
	$(PY) -m mypy --strict python/
	$(PY) -m mypy.stubtest visio_media._native

test: setup lint
	cd rust && $(WITH_LIBPYTHON) $(CARGO) test --workspace --locked
	@rc=0; $(PY) -m pytest tests $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

serve: setup
	$(PY) -m visio_media serve $(SERVE_ARGS)

bench: setup
	cd rust && $(WITH_LIBPYTHON) $(CARGO) bench --workspace --locked
	@if [ -n "$$(find benches -name 'test_*.py' -o -name '*_test.py' 2>/dev/null)" ]; then \
	  rc=0; $(PY) -m pytest benches --benchmark-only $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no benchmarks in benches/: failing" >&2; exit 1; fi; \
	  exit $$rc; \
	else \
	  echo "bench: no pytest-benchmark suites in benches/ yet"; \
	fi

clean:
	rm -rf $(STAMPS)
	rm -f python/visio_media/_native*.so

# Also drops the shared venv and cargo target dir (the next set-up rebuilds everything).
distclean: clean
	rm -rf $(VENV) $(CARGO_TARGET_DIR)
