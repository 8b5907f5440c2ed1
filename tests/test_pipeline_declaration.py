"""The pipeline declaration is read strictly: version, port roles, tables."""
import pytest

from ryu_dmm.pipeline import PIPELINE, Flow, parse, undeclared
from importlib import resources

TEXT = resources.files(PIPELINE[0]).joinpath(PIPELINE[1]).read_text()


def test_the_shipped_declaration_loads():
    p = parse(TEXT)
    assert [t.name for t in p.tables] == ["classify", "uplink", "downlink", "from_tunnel"]


def test_an_unknown_version_is_refused():
    with pytest.raises(ValueError, match="version 2 is not supported"):
        parse(TEXT.replace("version = 1", "version = 2"))


def test_port_roles_must_be_exactly_those_the_renderer_numbers():
    with pytest.raises(ValueError, match=r"\[ports\] must name the roles access, agent, core, tunnel"):
        parse(TEXT.replace('agent = "internal port', 'robot = "internal port'))


def test_undeclared_use_is_named():
    p = parse(TEXT)
    assert undeclared(p, Flow("downlink", 1, (("ipv6_dst", "2001:db8::/64"),), (("output", 1),))) is None
    assert undeclared(p, Flow("downlink", 1, (("in_port", 3),))) == "table downlink does not match on in_port"
    assert undeclared(p, Flow("classify", 1, (), (("set_field:eth_dst", b"\0" * 6),))) == \
        "table classify has no action set_field:eth_dst"
    assert undeclared(p, Flow("uplink", 1, (), goto="downlink")) == "table uplink cannot go to downlink"
    assert "no table 'egress'" in undeclared(p, Flow("egress", 1, ()))
