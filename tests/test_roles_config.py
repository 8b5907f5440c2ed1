"""``[roles]`` in the domain file (ryu_dmm/domainconf.py): defaults, the timing rule, clear errors."""
import pytest

from ryu_dmm.domainconf import ConfigError, RoleSettings, parse

BASE = "[dmm]\ncmd_address = ::1\n"


REDIS = "[store]\nbackend = redis\nurl = redis://127.0.0.1:1/0\n"


def roles(text, store=REDIS):
    return parse(BASE + store + "[roles]\n" + text)[1].roles


def test_no_section_means_one_instance_without_roles():
    assert parse(BASE)[1].roles == RoleSettings() and RoleSettings().redis is None


def test_a_url_and_the_defaults():
    r = roles("redis = redis://127.0.0.1:6379/0\ninstance = cmd-a\n")
    assert (r.redis, r.instance, r.lease_ttl, r.renew_interval, r.key_prefix) == (
        "redis://127.0.0.1:6379/0", "cmd-a", 1.5, 0.5, "dmm")


def test_the_stores_redis_and_only_with_a_shared_store():
    assert roles("redis = store\n").redis == "store"
    for text in ("redis = store\n", "redis = redis://127.0.0.1:2/0\n"):
        with pytest.raises(ConfigError, match=r"shared by the instances: \[store\] backend = redis"):
            roles(text, "")


@pytest.mark.parametrize("text, why", [
    ("redis = http://x\n", "is not store"),
    ("redis = redis://x\nlease_ttl = 0.5\n", "lease_ttl: 0.5 is outside"),
    ("redis = redis://x\nlease_ttl = 1.0\n", "renew_interval: at most half"),  # (1.0 - 0.3) / 2 < 0.5
    ("redis = redis://x\nrenew_interval = fast\n", "is not a number"),
    ("redis = redis://x\ninstance = a b\n", "instance"),
    ("redis = redis://x\nkey_prefix = \n", "key_prefix"),
    ("redis = redis://x\nttl = 3\n", "ttl"),
])
def test_bad_values_are_refused_with_the_key_named(text, why):
    with pytest.raises(ConfigError, match=why):
        roles(text)


def test_a_longer_lease_allows_slower_renewals():
    r = roles("redis = redis://x\nlease_ttl = 3\nrenew_interval = 1.35\n")
    assert (r.lease_ttl, r.renew_interval) == (3.0, 1.35)
