# Quick start: `make demo` trains NS3L on real Fashion-MNIST; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# TensorFlow flavour: tensorflow-cpu unless an NVIDIA driver is present.
TF_EXTRA ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install data demo test test-fast lint format docs benchmark table5 tags clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(VENV)/.installed

$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(TF_EXTRA),jax,test,docs]"
	touch $@

# Real Fashion-MNIST (Debian package dataset-fashion-mnist), unless NS3L_DATA_DIR points at it.
data:
	@if [ -n "$$NS3L_DATA_DIR" ] || [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or set NS3L_DATA_DIR to a directory holding its four IDX files" >&2; \
		exit 1; \
	fi

demo: install data
	$(BIN)/python -m ns3l_tf.train --flagfile=flags/fmnist_quick.cfg

# Tests run in pytest-xdist processes. Each test module stays in one process (--dist
# loadscope), so a module's shared trained run or two-backend comparison (scope="module"
# fixtures) is computed once, not once per process. On 2 cores two keep both about 93 % busy;
# three gave 621 s once and 705 s on a fresh clone (the two-process JAX cluster's test then
# took 154 s instead of 83 s), two 667 s and 680 s. `make test-fast` (70 s) uses fresh
# interpreters: its programs stop at a usage error before importing TensorFlow, so starting a
# fork server (tests/processes.py) would cost more than it saves there (91 s).
TEST_WORKERS ?= 2

test: install data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=25

# The unit tests alone (no test marked large): the quick answer while developing.
test-fast: install data
	NS3L_TEST_FRESH_PROCESSES=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) \
		--dist loadscope -m "not large"

# The documentation site in site/ (the flag reference is generated first, by docs/hooks.py).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: install data
	$(BIN)/python benchmarks/fmnist_2000.py

table5: install data
	$(BIN)/python benchmarks/table5.py

# An annotated tag vX.Y.Z on each released commit the CHANGELOG names (`## X.Y.Z (abc1234)`)
# that has no tag yet: a clone of main alone carries none.
tags:
	@sed -nE 's/^## ([0-9]+\.[0-9]+\.[0-9]+) \(([0-9a-f]+)\)$$/\1 \2/p' CHANGELOG.md | \
	while read -r version commit; do \
		git rev-parse -q --verify "refs/tags/v$$version" >/dev/null || \
		git tag -a "v$$version" "$$commit" -m "ns3l_tf $$version"; \
	done

clean:
	rm -rf $(VENV) runs site *.egg-info
