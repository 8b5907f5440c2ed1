"""``store.long_lived``: what a restart builds is put out of the garbage collector's sight, and the
collector is left as it was found (Python's documented gc.freeze/isenabled semantics)."""
import gc

import pytest

from ryu_dmm.store import long_lived


@pytest.fixture(autouse=True)
def collector():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_objects_built_inside_are_frozen_and_the_collector_comes_back_on():
    gc.enable()
    gc.unfreeze()
    with long_lived():
        assert not gc.isenabled()
        built = [[i] for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)


def test_a_disabled_collector_stays_disabled_even_when_the_build_fails():
    gc.disable()
    with pytest.raises(RuntimeError):
        with long_lived():
            raise RuntimeError("store unreadable")
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError):
        with long_lived():
            raise RuntimeError("store unreadable")
    assert gc.isenabled()
