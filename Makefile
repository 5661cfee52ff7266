# Two commands do all the set-up: `make demo` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench challenge tutorial clean chromium

$(BIN)/assocmem: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/assocmem
	$(BIN)/assocmem run scenarios/pronoun.yaml

test: $(BIN)/assocmem chromium
	$(BIN)/python -m pytest

# The HTML report's browser tests drive Debian's Chromium: as root (CI), install it where it is missing; elsewhere,
# or where the install fails, those tests skip and say why.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "make: could not install chromium; the browser tests will skip"

bench: $(BIN)/assocmem
	$(BIN)/assocmem bench

# The challenge suite under the default recipe, 100 seeds at d = 1000 each; a file below 0.99 is named on stderr.
challenge: $(BIN)/assocmem
	@for f in scenarios/challenge/*.yaml; do \
	  printf '%-46s' "$$f"; \
	  $(BIN)/assocmem sweep "$$f" --seeds 100 --dims 1000 --min-accuracy 0.99 --json \
	    | $(BIN)/python -c 'import json, sys; print("accuracy %.3f" % json.load(sys.stdin)["accuracy"])'; \
	done

# docs/tutorial.ipynb executed, with its pictures, as out/tutorial.ipynb (open it in Jupyter or VS Code).
tutorial: $(BIN)/assocmem
	mkdir -p out && cp docs/tutorial.ipynb out/tutorial.ipynb
	$(BIN)/jupyter-execute --inplace --timeout=300 out/tutorial.ipynb

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
