# The two commands of the README: `make demo` (main job, offline default) and `make test`.
# Both set up $(VENV) first if needed (.ci/setup-env): Python 3.10 with Lava where a 3.10 is found, else the
# newest Python >= 3.11 without Lava (SLT_PYTHON=lava|current forces one). `make test-current` tests the
# Python >= 3.11 environment in .venv-current beside a Lava .venv (what CI runs too: .ci/run).
VENV ?= .venv
SLT_PYTHON ?= auto
PYTEST_ARGS ?=

.PHONY: setup demo test test-current benchmark clean

setup:
	@VENV=$(VENV) SLT_PYTHON=$(SLT_PYTHON) bash .ci/setup-env

demo: setup
	$(VENV)/bin/slt-deploy demo

test: setup
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test-current:
	$(MAKE) test VENV=.venv-current SLT_PYTHON=current

benchmark: setup
	$(VENV)/bin/python benchmarks/search_mnist.py

clean:
	rm -rf demo_out runs .pytest_cache
