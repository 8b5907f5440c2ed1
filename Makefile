# `make lab` runs the lab demo, `make test` the test suite; both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
MODE ?= proxy

.PHONY: venv test lab bench clean
venv:
	@tools/setup.sh

test: venv
	$(PY) -m pytest

lab: venv
	$(PY) -m ryu_dmm.lab --mode $(MODE)

bench: venv
	$(PY) benchmarks/codec.py
	$(PY) benchmarks/cmd_core.py

clean:
	rm -rf $(VENV) build *.egg-info lab-out
