# The two commands a newcomer needs: `make run` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# Where `make test` runs the suite a second time; any server that answers on 127.0.0.1:5432 will do.
PG_TEST_URL ?= postgresql+psycopg://$(shell whoami)@127.0.0.1:5432/postgres
PORT ?= 8000

.PHONY: install run test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## make run: the embedded default (SQLite in ./instance, the development store, a demo shop) on :$(PORT)
run: install
	POPSYNC_ENV=development $(VENV)/bin/popsync demo --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## make test: lint, every test on SQLite, then again on PostgreSQL when one answers
test: lint
	@echo "== tests on SQLite"
	$(PY) -m pytest
	@if [ -n "$$TEST_DATABASE_URL" ] || $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		url="$${TEST_DATABASE_URL:-$(PG_TEST_URL)}"; \
		echo "== tests again on PostgreSQL ($$url)"; \
		TEST_DATABASE_URL="$$url" $(PY) -m pytest -m "not nodb"; \
	else \
		echo "== PostgreSQL: not answering on 127.0.0.1:5432 and TEST_DATABASE_URL unset; ran on SQLite only"; \
	fi

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis .ruff_cache
