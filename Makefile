# The two commands of the README: `make demo` (main job, offline default) and `make test`.
# Both create the Python 3.10 environment in .venv first if needed (see .ci/setup-env).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup demo test benchmark clean

setup:
	@VENV=$(VENV) bash .ci/setup-env

demo: setup
	$(VENV)/bin/slt-deploy demo

test: setup
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

benchmark: setup
	$(VENV)/bin/python benchmarks/search_mnist.py

clean:
	rm -rf demo_out runs .pytest_cache
