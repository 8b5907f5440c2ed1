"""The lab's wire verdict for the distributed mode, on hand-made dissections (no tshark): what a
correct discovery looks like and that a wrong answer is named (docs/mode-distributed.md)."""
from ryu_dmm.lab.distributed_verdict import judge
from ryu_dmm.lab.wire_verdict import MH_BA, MH_BU, Dissected, Mh

MAARS = {"maar1": "2001:db8:ff::1", "maar2": "2001:db8:ff::2", "maar3": "2001:db8:ff::3"}
MN = "mn-02000000000a@dmm"
P1, P2 = "2001:db8:1::/64", "2001:db8:2::/64"


def pbu(frame, t, src, dst, seq, hnp):
    return Mh(frame, t, MAARS[src], MAARS[dst], MH_BU, seq=seq, lifetime=400, p_flag=True, a_flag=True, mn_id=MN,
              hnp=[hnp], serving_maar=[MAARS[src]])


def pba(frame, t, src, dst, seq, status, hnp, anchored=()):
    return Mh(frame, t, MAARS[src], MAARS[dst], MH_BA, seq=seq, status=status, lifetime=400 if status == 0 else 0,
              mn_id=MN, hnp=[hnp], serving_maar=[MAARS[dst]], anchored=list(anchored))


def run(answer_from_maar1):
    msgs = [pbu(1, 1.0, "maar1", "maar2", 0, P1), pbu(2, 1.0, "maar1", "maar3", 0, P1),
            pba(3, 1.001, "maar2", "maar1", 0, 153, P1), pba(4, 1.001, "maar3", "maar1", 0, 153, P1),
            pbu(5, 5.0, "maar2", "maar1", 0, P2), pbu(6, 5.0, "maar2", "maar3", 1, P2),
            answer_from_maar1, pba(8, 5.001, "maar3", "maar2", 1, 153, P2)]
    reg = {"mn": "mn1", "mn_id": MN, "maar": "maar1", "prefix": P1, "t_end": 4.0}
    ho = {"mn": "mn1", "mn_id": MN, "to": "maar2", "new_prefix": P2, "previous": {"maar1": P1}, "t_move": 4.5,
          "t_end": 9.0}
    return judge(Dissected(frames=8, messages=msgs), maars=MAARS, registrations=[reg], handovers=[ho])


def test_a_correct_discovery_passes_and_counts_its_messages():
    v = run(pba(7, 5.001, "maar1", "maar2", 0, 0, P2, anchored=[P1]))
    assert v["ok"] and v["pbus"] == 4 and v["pbas"] == 4
    assert [x["messages"] for x in v["registrations"] + v["per_handover"]] == [4, 4]  # 2 x (3 MAARs - 1)


def test_a_previous_maar_that_does_not_name_its_prefix_fails():
    v = run(pba(7, 5.001, "maar1", "maar2", 0, 153, P2))
    assert not v["ok"] and v["per_handover"][0]["problems"] == [
        "PBA frame 7 from maar1: status 153, Anchored Prefix []; expected 0 and ['2001:db8:1::/64']"]
