"""Declarative OpenFlow pipelines (TOML data), shipped as package data for ``ryu_dmm.pipeline``."""
