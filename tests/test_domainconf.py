"""The domain configuration file: every mistake is named by section and key; render/parse round trip."""
import pytest

from ryu_dmm.domainconf import ConfigError, load, parse, render
from ryu_dmm.mobility.config import Dereg, Mode

GOOD = """
[DEFAULT]
wsapi_port = 8080

[dmm]
cmd_address = 2001:db8:ff::100
mode = relay
dereg = renewal
port = 5436

[timers]
lifetime = 120
aggregate_timeout = 1.5

[maar:maar1]
address = 2001:db8:ff::1
pool = 2001:db8:1::/48
datapath_id = 0x1
mac = 02:00:00:00:00:01

[maar:maar2]
address = 2001:db8:ff::2
pool = 2001:db8:2::/48
"""


def test_good_file_and_round_trip():
    domain, settings = parse(GOOD)
    assert domain.mode is Mode.RELAY and domain.dereg is Dereg.RENEWAL
    assert domain.timers.lifetime == 120 and domain.timers.aggregate_timeout == 1.5
    assert [m.name for m in domain.maars] == ["maar1", "maar2"]
    assert domain.maars[0].datapath_id == 1 and domain.maars[0].mac == bytes.fromhex("020000000001")
    assert parse(render(domain, settings, store=settings.store)) == (domain, settings)


def test_store_section_defaults_and_relative_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("RYU_DMM_STATE_DIR")
    _, settings = parse(GOOD)
    assert settings.store.backend == "sqlite" and settings.store.path == "/var/lib/ryu-dmm/cmd.sqlite"
    monkeypatch.setenv("RYU_DMM_STATE_DIR", str(tmp_path))
    assert parse(GOOD)[1].store.path == str(tmp_path / "cmd.sqlite")
    domain, _ = parse(GOOD)
    conf = tmp_path / "dmm.conf"
    conf.write_text(render(domain))  # render's default: state next to the file
    assert load(str(conf))[1].store.path == str(tmp_path / "dmm-state" / "cmd.sqlite")


@pytest.mark.parametrize("line,message", [
    ("backend = etcd", "[store] backend"), ("backend = redis", "needs either url"),
    ("backend = redis\nurl = redis://h:1/0\nsentinels = h:2", "not both"),
    ("backend = redis\nurl = http://h/", "[store] url"), ("backend = redis\nurl = redis://h:abc/0", "[store] url"),
    ("backend = redis\nurl = redis://h:99999/0", "[store] url"), ("backend = redis\nurl = redis://h:1/x", "[store] url"),
    ("backend = redis\nurl = redis:///0", "[store] url"), ("backend = redis\nsentinels = h", "[store] sentinels"),
    ("backend = redis\nsentinels = h:0", "[store] sentinels"), ("backend = redis\nsentinels = [::1]:x", "sentinels"),
    ("backend = redis\nurl = redis://h:1/0\nwait_replicas = 17", "[store] wait_replicas: 17 is outside 0..16"),
    ("backend = redis\nurl = redis://h:1/0\nwait_timeout_ms = 0", "[store] wait_timeout_ms"),
    ("backend = redis\nurl = redis://h:1/0\ntimeout = 0.01", "[store] timeout: 0.01 is outside"),
    ("backend = redis\nurl = redis://h:1/0\nlease = 0.1", "[store] lease"),
    ("backend = redis\nurl = redis://h:1/0\nactive_active = maybe", "[store] active_active"),
    ("backend = redis\nurl = redis://h:1/0\nnamespace = a b", "[store] namespace"),
    ("backend = redis\nurl = redis://h:1/0\nservice = ", "[store] service"),
    ("url = redis://h:1/0", "[store] url: only with backend = redis"),
    ("synchronous = off", "[store] synchronous"),
    ("on_corrupt = ignore", "[store] on_corrupt"), ("max_batch = 0", "[store] max_batch"),
    ("file = ", "[store] file"), ("path = x", "[store] path: unknown key"),
])
def test_bad_store_section(line, message):
    with pytest.raises(ConfigError) as err:
        parse(GOOD + "\n[store]\n" + line + "\n")
    assert message in str(err.value)


def test_redis_store_settings_and_round_trip():
    domain, settings = parse(GOOD + "\n[store]\nbackend = redis\nsentinels = 10.0.0.1:26379, [2001:db8::9]:26380\n"
                             "service = dmm-a\nwait_replicas = 1\nwait_timeout_ms = 250\nactive_active = yes\n"
                             "instance = cmd-1\nlease = 2\n")
    st = settings.store
    assert st.backend == "redis" and st.url == ""
    assert st.sentinels == (("10.0.0.1", 26379), ("2001:db8::9", 26380)) and st.service == "dmm-a"
    assert (st.wait_replicas, st.wait_timeout_ms, st.timeout) == (1, 250, 1.0)
    assert st.active_active is True and st.instance == "cmd-1" and st.lease == 2.0 and st.namespace == "dmm"
    assert parse(render(domain, settings, store=st)) == (domain, settings)
    st2 = parse(GOOD + "\n[store]\nbackend = redis\nurl = redis://127.0.0.1:6379/2\n")[1].store
    assert st2.url == "redis://127.0.0.1:6379/2" and st2.sentinels == () and st2.active_active is False
    assert parse(render(domain, settings, store=st2))[1].store == st2


def test_roles_round_trip():
    """[roles] (docs/openflow-roles.md) is written back as read."""
    domain, settings = parse(GOOD + "\n[store]\nbackend = redis\nurl = redis://127.0.0.1:6379/0\n"
                             "[roles]\nredis = store\ninstance = b\nlease_ttl = 2.5\nrenew_interval = 0.6\n")
    assert settings.roles.redis == "store" and settings.roles.lease_ttl == 2.5
    assert parse(render(domain, settings, store=settings.store)) == (domain, settings)


def test_embedded_default_runs_with_no_maars():
    domain, settings = load(None)
    assert domain.maars == () and domain.mode is Mode.PROXY and settings.port == 5436
    assert settings.flow_control == "cmd"  # the default: the CMD programs the switches


def test_flow_control_maar_round_trips():
    domain, settings = parse(GOOD.replace("port = 5436", "port = 5436\nflow_control = maar"))
    assert settings.flow_control == "maar"
    assert parse(render(domain, settings, store=settings.store)) == (domain, settings)


def test_the_agents_cmd_list():
    """[dmm] cmd_addresses: the CMDs the agents signal to, in order (docs/failover.md); without it
    cmd_address alone."""
    domain, _ = parse(GOOD)
    assert domain.cmds == ("2001:db8:ff::100",) and domain.timers.failover_timeout == 2.0
    domain, settings = parse(GOOD.replace("mode = relay", "mode = relay\ncmd_addresses = 2001:db8:ff::100, "
                                          "2001:db8:FF:0::101"))
    assert domain.cmds == ("2001:db8:ff::100", "2001:db8:ff::101")
    assert parse(render(domain, settings, store=settings.store)) == (domain, settings)


@pytest.mark.parametrize("edit,message", [
    (("mode = relay", "mode = relais"), "[dmm] mode"),
    (("port = 5436", "port = 99999"), "[dmm] port"),
    (("port = 5436", "prot = 5436"), "[dmm] prot: unknown key"),
    (("lifetime = 120", "lifetime = 121"), "[timers] lifetime"),
    (("lifetime = 120", "lifetime = soon"), "[timers] lifetime"),
    (("aggregate_timeout = 1.5", "agregate_timeout = 1.5"), "[timers] agregate_timeout: unknown key"),
    (("mac = 02:00:00:00:00:01", "mac = 02:00"), "[maar:maar1] mac"),
    (("datapath_id = 0x1", "datapath_id = one"), "[maar:maar1] datapath_id"),
    (("pool = 2001:db8:1::/48", "pool = 2001:db8:1::1/48"), "[maar:maar1] pool"),
    (("pool = 2001:db8:2::/48", "pool = 2001:db8::/32"), "overlap"),
    (("address = 2001:db8:ff::2", "address = 2001:db8:ff::1"), "used twice"),
    (("address = 2001:db8:ff::2", "address = not-an-address"), "[maar:maar2] address"),
    (("cmd_address = 2001:db8:ff::100", ""), "[dmm] cmd_address: missing"),
    (("[timers]", "[timer]"), "[timer]: unknown section"),
    (("[maar:maar2]", "[maar:]"), "needs a name"),
    (("[dmm]", "[dmm"), "<config>"),
    (("port = 5436", "port = 5436\nflow_control = switch"), "[dmm] flow_control: 'switch' is not one of cmd, maar"),
    (("mode = relay", "mode = relay\ncmd_addresses = 2001:db8:ff::100, nowhere"), "[dmm] cmd_addresses"),
    (("mode = relay", "mode = relay\ncmd_addresses = 2001:db8:ff::100, 2001:db8:ff:0::100"), "listed twice"),
    (("mode = relay", "mode = relay\ncmd_addresses = 2001:db8:ff::100, 2001:db8:ff::1"), "used twice"),
    (("aggregate_timeout = 1.5", "failover_timeout = 0.01"), "[timers] failover_timeout"),
])
def test_bad_files_name_the_key(edit, message):
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace(*edit))
    assert message in str(err.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="No such file"):
        load("/nonexistent/domain.ini")


def test_distributed_mode_needs_no_cmd_and_programs_switches_from_the_maars():
    text = GOOD.replace("cmd_address = 2001:db8:ff::100\n", "").replace("mode = relay", "mode = distributed")
    domain, settings = parse(text)
    assert domain.mode is Mode.DISTRIBUTED and settings.flow_control == "maar"  # no CMD to do it
    with pytest.raises(ConfigError, match=r"\[dmm\] flow_control: mode = distributed has no CMD"):
        parse(text.replace("port = 5436", "port = 5436\nflow_control = cmd"))
    with pytest.raises(ConfigError, match=r"\[dmm\] cmd_address: missing"):
        parse(text.replace("mode = distributed", "mode = proxy"))
