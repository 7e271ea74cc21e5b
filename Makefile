# Two commands on a fresh machine with Python 3.11:
#   make dev    set everything up, write demo data when missing, start the UI on 127.0.0.1:3000
#   make test   set everything up, install the system packages the tests need, lint, run the tests (what CI runs)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export TF_CPP_MIN_LOG_LEVEL ?= 2
PORT ?= 3000

.PHONY: dev test lint setup system-packages instance demo-data

setup: $(VENV)/.installed

# Reinstalled whenever the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@

# The instance lives in the git-ignored .dagster_home; its configuration is the checked-in dagster.yaml.
instance: setup
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/turbine-instance-setup

demo-data: setup
	$(BIN)/turbine-demo-data --if-missing

dev: instance demo-data
	$(BIN)/dagster dev --host 127.0.0.1 --port $(PORT) --workspace workspace.yaml

# Debian's PostgreSQL server and Chromium, for the deploy and browser tests; installs only what is missing
# (root or password-less sudo needed only then).
system-packages:
	.ci/install-system-packages

# The rules a machine can check: style and lint (ruff) and the layering (import-linter); config in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# A failing linter or pytest fails `make test` (make exits with 2).
test: setup system-packages lint
	$(BIN)/pytest
