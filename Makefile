# The two commands a user needs: `make repro` (set up and run the pipeline) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
DATA_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# DVC stages run `python ...`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: repro setup data test lint clean

repro: setup
	dvc repro
	@dvc metrics show

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian ships the official files; the download stage falls back to the public mirrors.
data:
	@if [ ! -f $(DATA_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist package"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; \
	fi

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV)
