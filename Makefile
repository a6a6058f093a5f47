# Developer entry points (SPEC §1). Everything runs from the checkout's .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test bench soak lint clean

# Idempotent: the venv is made once, pip runs again only when pyproject.toml
# changed since the last successful install (the stamp file records that).
# pybabel fails with a traceback when there is no catalog yet, so translations
# are compiled only once a .po file exists (-q must come before the subcommand).
install: $(VENV)/.installed
	@if [ -n "$$(find idp/translations -name '*.po' 2>/dev/null | head -n1)" ]; then \
		$(BIN)/pybabel -q compile -d idp/translations -f; \
	fi

$(BIN)/python:
	@$(PY) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "error: '$(PY) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }

# `idp serve` runs under -OO (idp/server.py): its bytecode is compiled here once, so that a
# server does not compile every module it imports at each start where bytecode is not
# written (PYTHONDONTWRITEBYTECODE, a read-only venv). Only a speed-up: never fails the install.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	-@$(BIN)/python -OO -m compileall -q -j0 $(VENV)/lib idp federation keys >/dev/null 2>&1
	@touch $@

run: install
	$(BIN)/idp dev

test: install
	scripts/system-deps.sh test
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: install
	scripts/system-deps.sh bench
	bench/run.sh

# SOAK_SECONDS (default 600) of mixed traffic against idp serve --workers 2 on a
# throwaway PostgreSQL; fails on any error, lost refresh family or memory growth.
soak: install
	scripts/system-deps.sh soak
	$(BIN)/python bench/soak.py

lint: install
	$(BIN)/ruff check idp keys federation tests bench

clean:
	rm -rf $(VENV) instance build *.egg-info .pytest_cache .ruff_cache
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
