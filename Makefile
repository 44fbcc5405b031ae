# Two commands on a fresh machine: `make run` (the main job) and `make test` (the test suite);
# `make test-fast` runs the tests that need no Ray, no sweep, no cluster and no calibration draws
# (tests/conftest.py). `make docs` builds the documentation site (docs/, mkdocs.yml) into site/.
# Everything Python goes into a local virtual environment, .venv/.
PYTHON ?= python3.11
VENV ?= .venv
# CPU torch by default: an unpinned torch pulls a multi-GB CUDA build. On a GPU cluster override it,
# e.g. `make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" run`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Debian packages need root: use sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-fast docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# What the tests drive besides rxsweep's own dependencies: Debian's Chromium (the report is opened in
# it) and the wilds package's own RxRx1 reader, installed without its dependencies (its torchvision
# wheel cannot import against the CPU torch; the RxRx1 reader does not need it).
$(VENV)/.test-tools: $(VENV)/.installed
	command -v chromium >/dev/null || $(SUDO) apt-get install -y --no-install-recommends chromium \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)
	$(BIN)/python -m pip install --quiet --no-deps "wilds==2.0.0"
	touch $@

run: install
	$(BIN)/python jobs/sweep.py

test: install $(VENV)/.test-tools
	$(BIN)/python -m pytest -q

test-fast: install $(VENV)/.test-tools
	$(BIN)/python -m pytest -q -m "not (ray or sweep or cluster or calibration)"

# --strict: a broken link, a missing anchor or a docstring reference mkdocstrings cannot resolve
# fails the build. The docs tools are in the `test` extra (the `docs` extra of pyproject.toml).
# NO_MKDOCS_2_WARNING silences Material's end-of-life banner, which says nothing about this site.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) results site
