# leadhub — every set-up step lives here so a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install lock demo test smoke bench worker web emulator lint format check clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,demo]'
	rm -f $(VENV)/.installed-*
	touch $@

# Re-pin every transitive dependency after changing pyproject.toml.
lock: install
	$(BIN)/pip freeze --exclude-editable > constraints.txt

demo: install
	DJANGO_DEBUG=1 $(BIN)/python scripts/demo.py

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

smoke: install
	$(BIN)/pytest -m smoke $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py

worker: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py run_workers

web: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py runserver 127.0.0.1:8000

emulator: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py cloudagent_emulator --port 8900

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: install
	DJANGO_DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var/*.sqlite3* var/demo
