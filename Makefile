# Every target creates .venv itself: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-unit test-integration demo lint bench clean dev-up dev-down

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# two pytest workers (pytest-xdist), a test file each at a time, each with its own session servers:
# the integration tests mostly wait on processes and the broker, so two halve the wall time on two cores
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration -q

demo: $(STAMP)
	$(VENV)/bin/freshet demo

# mypy cannot follow the package-dir mapping (features/ is freshet.features): it checks a tree of
# symlinks that puts each folder at its import path
TYPECHECK := build/typecheck
lint: $(STAMP)
	$(VENV)/bin/ruff check freshet features pipelines replay infra examples tests bench
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/freshet
	for f in freshet/*.py freshet/py.typed; do ln -s ../../../$$f $(TYPECHECK)/freshet/; done
	for d in features pipelines replay infra; do ln -s ../../../$$d $(TYPECHECK)/freshet/$$d; done
	cd $(TYPECHECK) && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml

bench: $(STAMP)
	$(PY) -m bench.run

dev-up: $(STAMP)
	$(VENV)/bin/freshet dev up

dev-down: $(STAMP)
	$(VENV)/bin/freshet dev down

clean:
	-$(VENV)/bin/freshet dev down
	rm -rf .freshet data build *.egg-info
