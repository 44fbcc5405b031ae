# Two commands on a fresh machine: `make run` (the main job) and `make test` (the test suite).
# Everything goes into a local virtual environment, .venv/.
PYTHON ?= python3.11
VENV ?= .venv
# CPU torch by default: an unpinned torch pulls a multi-GB CUDA build. On a GPU cluster override it,
# e.g. `make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" run`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: install
	$(BIN)/python jobs/sweep.py

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results
