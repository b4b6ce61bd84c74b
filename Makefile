# camkit: the two commands a newcomer needs are `make report` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default
STAMP := $(VENV)/.camkit-installed

.PHONY: install data shapes report test assignments bench clean
.DEFAULT_GOAL := report

# Create the local venv and install the project with its [dev] extra (torch, peers, report tools).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps imgaug==0.4.0
	touch $@

install: $(STAMP)

# Offline photos from Debian's darknet package into a git-ignored cache (see data/README.md).
data: install
	$(PY) tools/fetch_data.py

# Retrain the shapes-world CNNs (a few CPU minutes; the committed weights are in data/).
shapes: install
	$(PY) tools/train_shapes.py

report: install data
	$(PY) tools/build_report.py --profile $(PROFILE)

test: install data
	$(PY) -m pytest -p no:cacheprovider --durations=25 tests \
		--nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
		$(wildcard notebooks/[0-9]*.ipynb) $(wildcard notebooks/assignments/master/*.ipynb)

assignments: install
	$(PY) tools/make_assignments.py

bench: install
	$(PY) benchmarks/bench_cams.py

clean:
	rm -rf build
