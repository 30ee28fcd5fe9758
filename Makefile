# Two entry points (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install only when the package metadata changes (a second `make test` does not reinstall).
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: test demo bench lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $@

test: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	echo "test suite wall time: $$(( $$(date +%s) - start )) s"; exit $$status

demo: $(STAMP)
	$(BIN)/diffgen demo --out out

# The full benchmark suite, with Pythia 8 (the optional extra `bench`) as a same-run baseline.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
	$(BIN)/python -m benchmarks

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check diffgen tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache build *.egg-info
