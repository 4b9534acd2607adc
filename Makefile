# Two commands matter: `make dev` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov in a venv of its own (it pins boto3 exactly; see [tool.campaign-relay] in pyproject.toml).
CHECKOV_VENV := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: dev test lint unit integration bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CHECKOV_STAMP): pyproject.toml | $(STAMP)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet \
		"$$($(BIN)/python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["campaign-relay"]["checkov"])')"
	touch $(CHECKOV_STAMP)

dev: $(STAMP)
	$(BIN)/relay-local

lint: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m relay_local.translate template.yaml > $(VENV)/translated.json
	$(BIN)/cfn-lint $(VENV)/translated.json
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml -f template.yaml -f $(VENV)/translated.json

test: lint
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration tests/e2e

bench: $(STAMP)
	$(BIN)/python -m bench

# The whole stack under upstream faults, crashed invocations and compressed time; exits non-zero
# if any accepted work was lost (bench/bench_chaos.py). Minutes long, so not part of `bench`.
chaos: $(STAMP)
	$(BIN)/python -m bench chaos

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
