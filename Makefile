# `make run` and `make test` set everything up by themselves on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
OUT ?= runs/latest
PROFILE ?= quick

.PHONY: run test test-all bench clean lint docs

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	@touch $@

run: $(VENV)/.installed
	$(VENV)/bin/multilens run --profile $(PROFILE) --stress --out $(OUT)  # prints the report's path

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format --check --quiet src tests benchmarks examples tools
	$(VENV)/bin/ruff check --quiet src tests benchmarks examples tools
	$(PY) -m pytest -q -m "not slow" --timeout=900

test-all: $(VENV)/.installed-dev
	$(PY) -m pytest -q --timeout=3600

bench: $(VENV)/.installed-dev
	$(PIP) install --no-deps "pyhessian==0.1" "netcal==1.4.0" "torchattacks==3.5.1" \
	  "curvlinops-for-pytorch==3.0.1" "hessian-eigenthings==1.0.0a5" \
	  tqdm einops einconv opt_einsum "backpack-for-pytorch==1.7.1" unfoldNd "linear_operator==0.6.1"
	$(PIP) install "torchmetrics==1.9.0" "fairlearn==0.15.0"
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache site

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format src tests benchmarks examples tools
	$(VENV)/bin/ruff check --fix src tests benchmarks examples tools

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site
