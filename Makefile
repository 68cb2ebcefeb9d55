# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv on first use, installs dpd, runs vanilla PPO, the independent pair and DPD-PPO side by side
#   make test   creates .venv on first use, installs dpd with its dev tools and Ray, runs ruff, mypy and the tests
#   (make test-extended: the longer half; make test-studies: the tests of studies/; CI runs both too)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
BASE := $(VENV)/.installed-base-$(HASH)
DEV := $(VENV)/.installed-dev-$(HASH)

.PHONY: demo test test-extended test-studies lint type pytest slow clean

$(BASE): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: pip takes the CPU wheel (an unpinned torch pulls a multi-GB CUDA build); the package
	# itself takes a range, so it installs beside a torch a user already has
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	rm -f $(VENV)/.installed-* && touch $@

# the tests also run the Ray backend and the JAX pack (extras for users: pip install 'dpd[ray]', 'dpd[jax]')
$(DEV): $(BASE)
	$(BIN)/python -m pip install -q -e ".[dev,ray,jax]"
	touch $@

demo: $(BASE)
	$(BIN)/dpd demo

test: $(DEV) lint type pytest

lint: $(DEV)
	$(BIN)/ruff check .

type: $(DEV)
	$(BIN)/mypy

pytest: $(DEV)
	$(BIN)/pytest

# the second part of CI (.ci/run): the hostile-input properties (tests/test_hardening3.py, ...) and the benchmarks'
# smoke runs, kept out of make test's 5 minutes
test-extended: $(DEV)
	$(BIN)/pytest -m "extended and not studies"

# the third part of CI: the tests of studies/ (its scripts, sweep files and pre-registered rules), not the library's
test-studies: $(DEV)
	$(BIN)/pytest -m studies

slow: $(DEV)
	$(BIN)/pytest -m slow -n 0

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
