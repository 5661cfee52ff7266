# Two commands do all the set-up: `make demo` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/assocmem: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/assocmem
	$(BIN)/assocmem run scenarios/pronoun.yaml

test: $(BIN)/assocmem
	$(BIN)/python -m pytest

bench: $(BIN)/assocmem
	$(BIN)/assocmem bench

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
