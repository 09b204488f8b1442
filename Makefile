# Everything a fresh machine with Python 3.11 needs: `make demo`, `make test`.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test lint bench-sweep bench-dispatch bench-chaos clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON) --quiet
	touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/milepost demo

test: $(VENV)/.synced
	$(VENV)/bin/pytest

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench-sweep: $(VENV)/.synced
	$(VENV)/bin/python bench/sweep.py

# Needs Redis on 127.0.0.1:6379 (database 14 is emptied); prints figures, then one JSON line.
bench-dispatch: $(VENV)/.synced
	$(VENV)/bin/python bench/dispatch.py

# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379 (database 13 is emptied). RESTARTS BOTH
# mid-run (shared servers: both are left running); prints figures, then one JSON line.
bench-chaos: $(VENV)/.synced
	$(VENV)/bin/python bench/chaos.py

clean:
	rm -rf $(VENV) $(TOOLS) milepost.db* demo-output
