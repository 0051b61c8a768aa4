# Two commands: `make run` and `make test`. Both install what they need into .venv/ first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit fuzz bench lock clean reliability

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check 'uv==0.13.9'
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/posthorn serve $(if $(CONFIG),-c $(CONFIG),)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/fuzz

test: $(STAMP) lint typecheck
	bash scripts/test-deps.sh curl swaks isync fetchmail chromium
	@# pytest exits 5 when it collected no test: say so plainly instead of failing obscurely.
	$(BIN)/pytest -q; rc=$$?; [ $$rc -ne 5 ] || echo "make test: pytest collected no tests"; exit $$rc

# The reliability suite the long way: `kill -9` of `posthorn serve` KILLS times (default 30,
# about 4 minutes) under SMTP, submission, IMAP APPEND and relaying load; `make test` runs 4.
# POSTHORN_SEED=N replays a run; the figures go to test-artifacts/reliability/crash.json.
KILLS ?= 30
reliability: $(STAMP)
	POSTHORN_KILLS=$(KILLS) $(BIN)/pytest -q -s tests/reliability

# The fuzzers with every budget times 10 (tests/fuzz/budget.py); a few minutes.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=deep $(BIN)/pytest -q -p no:randomly --timeout=3600 tests/fuzz

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/imap.py

# Re-pin every dependency (run after editing pyproject.toml's dependency lists).
lock: 
	@test -x $(BIN)/uv || { $(PY) -m venv $(VENV) && $(BIN)/python -m pip install -q uv; }
	$(BIN)/uv pip compile -q --python-version 3.11 --extra dev --generate-hashes pyproject.toml -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
