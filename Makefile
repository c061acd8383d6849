# The two commands a newcomer needs: `make run` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# Where `make test` runs the suite a second time; any server that answers on 127.0.0.1:5432 will do.
PG_TEST_URL ?= postgresql+psycopg://$(shell whoami)@127.0.0.1:5432/postgres
PORT ?= 8000
NPM ?= npm
# Debian's Chromium drives the browser tests (tests/browser); without it, Playwright's own download.
CHROMIUM ?= /usr/bin/chromium

.PHONY: install node browser run test lint clean bench bench-scaleout

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The Node tools (package.json: theme-check for the Shopify extension, terser for the popup build).
node_modules/.installed: package.json package-lock.json
	@if [ -f package.json ]; then $(NPM) ci --no-audit --no-fund; fi
	touch $@

node: node_modules/.installed

## a browser for tests/browser: none to fetch when $(CHROMIUM) exists; CI installs Debian's (.ci/run)
browser: $(VENV)/.installed
	@if [ ! -x "$(CHROMIUM)" ] && [ -z "$$CI" ]; then \
		echo "== $(CHROMIUM) not found: installing Playwright's Chromium"; \
		$(VENV)/bin/playwright install chromium; \
	fi

install: $(VENV)/.installed node browser

## make run: the embedded default (SQLite in ./instance, the development store, a demo shop) on :$(PORT)
run: $(VENV)/.installed
	POPSYNC_ENV=development $(VENV)/bin/popsync demo --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## make test: lint, every test on SQLite and, at the same time, the database tests again on PostgreSQL when
## one answers (the two passes share nothing: SQLite files and PostgreSQL databases of their own). Each pass
## writes to its own log, printed when both have ended.
test: lint
	@if [ -n "$$TEST_DATABASE_URL" ] || $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		url="$${TEST_DATABASE_URL:-$(PG_TEST_URL)}"; \
		logs=$$(mktemp -d); \
		echo "== tests on SQLite and on PostgreSQL ($$url), side by side"; \
		( env -u TEST_DATABASE_URL $(PY) -m pytest -p no:cacheprovider > $$logs/sqlite.log 2>&1; echo $$? > $$logs/sqlite.rc ) & \
		TEST_DATABASE_URL="$$url" $(PY) -m pytest -p no:cacheprovider -m "not nodb" > $$logs/postgresql.log 2>&1; \
		echo $$? > $$logs/postgresql.rc; \
		wait; \
		echo "== tests on SQLite"; cat $$logs/sqlite.log; \
		echo "== tests again on PostgreSQL ($$url)"; cat $$logs/postgresql.log; \
		sqlite=$$(cat $$logs/sqlite.rc); postgresql=$$(cat $$logs/postgresql.rc); rm -rf $$logs; \
		echo "== SQLite: exit $$sqlite; PostgreSQL: exit $$postgresql"; \
		[ "$$sqlite" -eq 0 ] && [ "$$postgresql" -eq 0 ]; \
	else \
		echo "== PostgreSQL: not answering on 127.0.0.1:5432 and TEST_DATABASE_URL unset; SQLite only"; \
		$(PY) -m pytest; \
	fi

## make bench: every benchmark (bench/run_all.py) and one table, also in bench/results/latest.md. Needs
## PostgreSQL on 127.0.0.1:5432 and wrk (apt-get install wrk). BENCH_ARGS=--quick: a smoke run.
BENCH_ARGS ?=
bench: $(VENV)/.installed browser
	$(PY) bench/run_all.py $(BENCH_ARGS)

## make bench-scaleout: 1, 2, 4 web workers x 1, 2 background workers; rewrites the table in docs/scaling.md
bench-scaleout: $(VENV)/.installed
	$(PY) bench/scaleout.py --write-docs docs/scaling.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis .ruff_cache node_modules
