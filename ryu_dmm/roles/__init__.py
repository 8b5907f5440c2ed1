"""OpenFlow master/slave roles across several CMD instances (docs/openflow-roles.md): a sans-IO
election (``election.py``), switch leases in Redis (``redislease.py``) and the shell side that
runs the rounds and speaks OFPT_ROLE_REQUEST (``keeper.py``)."""
