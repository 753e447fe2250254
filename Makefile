# The two commands a user needs: `make repro` (set up and run the pipeline) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
DATA_DIR := /usr/share/datasets/fashion-mnist
PLOTS_TEMPLATE := build/plots-template.html
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
REV ?= main
# Recipes read it as "$$REV" from the environment: a branch name never becomes shell code.
export REV

# DVC stages run `python ...`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.PHONY: repro setup data test test-all lint plots plots-diff exps report bench clean

repro: setup
	dvc repro
	@dvc metrics show

setup: $(VENV)/.installed data $(PLOTS_TEMPLATE) .dvc/config.local

# This clone's own settings, in the untracked .dvc/config.local (a clone without `make setup`
# keeps DVC's defaults):
# - The default remote `local` is ../fmnist-dvc-storage (beside this clone). DVC resolves that
#   relative url against "/" when it reads another revision's config (dvc exp push/pull,
#   push -a; treeverse/dvc#10054), so pin it, absolute.
# - `dvc plots show/diff` use the offline page template built below (relative to .dvc/).
.dvc/config.local: $(VENV)/.installed $(PLOTS_TEMPLATE) Makefile
	$(BIN)/dvc remote modify --local local url $(abspath ../fmnist-dvc-storage)
	$(BIN)/dvc config --local plots.html_template ../$(PLOTS_TEMPLATE)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,serve]'
	touch $@

# Debian ships the official files; without them the download stage uses the public mirrors.
data:
	@if [ ! -f $(DATA_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist package"; \
		( $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist ) \
		|| echo "apt-get failed: the download stage will try the public mirrors instead"; \
	fi

# vega, vega-lite and vega-embed inline, from the vl-convert-python package (PyPI, no npm), so
# `dvc plots show/diff` pages work offline (.dvc/config.local points plots.html_template here).
$(PLOTS_TEMPLATE): $(VENV)/.installed src/fmnist_dvc/experiments/offline_plots.py
	$(BIN)/python -m fmnist_dvc.experiments.offline_plots $@

plots: setup
	$(BIN)/python -m fmnist_dvc.experiments.plots show --open

plots-diff: setup
	$(BIN)/python -m fmnist_dvc.experiments.plots diff "$$REV" --open

# `dvc exp show` cut down from a column per param, metric and dependency (75) to what tells
# runs apart: the params that differ between the rows shown, the test scores (not the
# per-class averages) and the training time. Rows: the current commit and its experiments;
# more options pass through, e.g. make exps EXPS=-A (every commit's) or EXPS=--md.
EXPS ?=
exps: setup
	dvc exp show --only-changed \
		--drop '(data|src|stages)/|models$$|test\.(macro_avg|weighted_avg|images|top2)' \
		--keep 'test\.(accuracy|loss|tta_accuracy)$$|train\.seconds$$' $(EXPS)

# Markdown comparison of the workspace with $(REV), e.g. for a pull-request comment.
report: setup
	$(BIN)/python -m fmnist_dvc.experiments.report "$$REV" -o report.md
	@cat report.md

# Training speed against the naive seed loop, and the pipeline's other costs (docs/performance.md):
# the median of 3 rounds; every run goes to docs/performance.json. `make bench BENCH_ARGS=` runs
# one round into benchmarks/results.json. Run it on a quiet machine: it measures everything else
# that runs too.
BENCH_ARGS ?= --repeat 3 --json docs/performance.json
bench: setup
	dvc repro
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# The fast tier: no Chromium, moto or network needed (tests that need one skip locally and
# fail under CI=true). test-all adds the slow tier: the test modules marked `pytestmark =
# pytest.mark.slow` (tests/test_tiers.py fails when an unmarked one uses the slow-only helpers:
# scratch DVC projects, S3 servers, Ray, Chromium). Its three workers on two cores pay off
# because many slow tests wait on DVC, git, Ray and servers.
test: $(VENV)/.installed data
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dvc_plots report.md
