"""The agent's restart counter file (agent/restart.py): a new counter at every start."""
import os
import time

from ryu_dmm.agent.restart import counter_path, next_counter


def test_counts_up_from_one_and_survives_in_its_file(tmp_path):
    state = tmp_path / "state" / "nested"  # created when missing
    assert next_counter(str(state), "maar1") == (1, None)
    assert next_counter(str(state), "maar1") == (2, None)
    assert next_counter(str(state), "maar2") == (1, None)  # one file per MAAR
    assert (state / "maar-maar1.restart").read_text() == "2\n"
    assert counter_path(str(state), "maar1") == str(state / "maar-maar1.restart")
    assert sorted(os.listdir(state)) == ["maar-maar1.restart", "maar-maar2.restart"]  # no temporary left


def test_wraps_at_32_bits(tmp_path):
    (tmp_path / "maar-maar1.restart").write_text("4294967295\n")
    assert next_counter(str(tmp_path), "maar1") == (0, None)


def test_garbage_gives_a_time_based_counter_and_a_warning(tmp_path):
    (tmp_path / "maar-maar1.restart").write_text("not a number")
    before = int(time.time())
    counter, warning = next_counter(str(tmp_path), "maar1")
    assert before <= counter <= int(time.time()) and "holds no counter" in warning
    assert (tmp_path / "maar-maar1.restart").read_text() == f"{counter}\n"  # and counts on from there
    assert next_counter(str(tmp_path), "maar1") == (counter + 1, None)


def test_unwritable_state_dir_gives_a_time_based_counter_and_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    before = int(time.time())
    counter, warning = next_counter(str(blocker / "state"), "maar1")  # a directory under a file
    assert before <= counter <= int(time.time())
    assert warning.startswith(f"cannot keep the restart counter in {blocker / 'state' / 'maar-maar1.restart'}")
