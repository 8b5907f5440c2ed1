# `make lab` runs the lab demo, `make test` the test suite; both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
MODE ?= proxy

.PHONY: venv test lab demo bench clean
venv:
	@tools/setup.sh

test: venv
	$(PY) -m pytest

lab: venv
	$(PY) -m ryu_dmm.lab --mode $(MODE) $(if $(TOPOLOGY),--topology $(TOPOLOGY))

demo: venv
	$(PY) -m ryu_dmm.lab.sigdemo --mode $(MODE)

bench: venv
	$(PY) benchmarks/codec.py
	$(PY) benchmarks/cmd_core.py
	$(PY) benchmarks/cmd_udp.py
	$(PY) benchmarks/cmd_store.py --sizes 100000

# A fuzz run against a real CMD on loopback (docs/fuzzing.md); COUNT, SEED and RATE override the defaults.
.PHONY: fuzz
fuzz: venv
	$(PY) benchmarks/fuzz_cmd.py $(if $(COUNT),--count $(COUNT)) $(if $(SEED),--seed $(SEED)) $(if $(RATE),--rate $(RATE))

clean:
	rm -rf $(VENV) build *.egg-info lab-out
