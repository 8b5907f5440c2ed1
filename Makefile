# `make lab` runs the lab demo, `make test` the test suite; both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
MODE ?= proxy

# The tests that start the CMD as a process run a second time under os-ken's osken-manager (docs/runtime.md).
OSKEN_TESTS := tests/test_startup.py tests/test_cmd_app.py tests/test_cmd_limits.py \
	tests/test_hostile_cmd.py tests/test_rest_server.py tests/test_metrics.py tests/test_metrics_ovs.py \
	tests/test_ovs_flows.py tests/test_raw_mh.py tests/test_store_restart.py tests/test_active_active.py \
	tests/test_roles_ovs.py tests/test_of_tls.py tests/test_failover_e2e.py

.PHONY: venv venv-osken test test-osken lab demo bench clean
venv:
	@tools/setup.sh

venv-osken:
	@DMM_OSKEN=1 tools/setup.sh

test: venv-osken
	$(PY) -m pytest
	DMM_RUNTIME=osken $(PY) -m pytest $(OSKEN_TESTS)

test-osken: venv-osken
	DMM_RUNTIME=osken $(PY) -m pytest $(OSKEN_TESTS)

lab: venv
	$(PY) -m ryu_dmm.lab --mode $(MODE) $(if $(TOPOLOGY),--topology $(TOPOLOGY)) $(if $(FLOW_CONTROL),--flow-control $(FLOW_CONTROL)) \
		$(if $(CMDS),--cmds $(CMDS)) $(if $(STORE),--store $(STORE))

demo: venv
	$(PY) -m ryu_dmm.lab.sigdemo --mode $(MODE)

bench: venv
	$(PY) benchmarks/codec.py
	$(PY) benchmarks/cmd_core.py
	$(PY) benchmarks/cmd_udp.py
	$(PY) benchmarks/cmd_store.py --sizes 100000
	$(PY) benchmarks/cmd_redis.py
	$(PY) benchmarks/failover.py --runs 3

# A fuzz run against a real CMD on loopback (docs/fuzzing.md); COUNT, SEED and RATE override the defaults.
.PHONY: fuzz
fuzz: venv
	$(PY) benchmarks/fuzz_cmd.py $(if $(COUNT),--count $(COUNT)) $(if $(SEED),--seed $(SEED)) $(if $(RATE),--rate $(RATE))

clean:
	rm -rf $(VENV) .venv-osken build *.egg-info lab-out
