# The two commands of the README, each self-sufficient on a fresh machine:
#   make demo   the main job: a real federation on the embedded broker
#   make test   lint, types, and the whole test suite on Apache Kafka (plus the broker suite on tansu)
# BROKER=kafka|tansu|HOST:PORT picks the lane of `make test` (default: kafka where Java 17+ and Maven exist).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
BROKER ?=

.PHONY: demo test lint bench venv clean

$(STAMP): pyproject.toml
	@rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/interfed demo

lint: $(STAMP)
	$(PY) -m mesh.schemagen --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_floors.py

test: lint
	$(PY) tests/lanes.py $(BROKER)

bench: $(STAMP)
	$(VENV)/bin/interfed bench bus

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
