"""Each node's first process says once which global ranks it holds, so a log reader sees which node is rank 0
(c10d numbers the nodes itself; Slurm's task number, hpcft logs' /N label, need not agree)."""

from __future__ import annotations

from hpcft.trainer.loop.distributed import node_ranks_line

TORCHRUN = {"GROUP_WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "4", "SLURMD_NODENAME": "nid002"}


def test_the_node_holding_rank_0_says_so():
    line = node_ranks_line({**TORCHRUN, "GROUP_RANK": "0", "RANK": "0", "LOCAL_RANK": "0"})
    assert (
        line
        == "hpcft: nid002 is node 0 of 2 in the rendezvous, global ranks 0-3 (rank 0: the step lines come from here)"
    )


def test_other_nodes_name_their_ranks_and_other_processes_stay_quiet():
    line = node_ranks_line({**TORCHRUN, "GROUP_RANK": "1", "RANK": "4", "LOCAL_RANK": "0"})
    assert line == "hpcft: nid002 is node 1 of 2 in the rendezvous, global ranks 4-7"
    assert node_ranks_line({**TORCHRUN, "GROUP_RANK": "1", "RANK": "5", "LOCAL_RANK": "1"}) is None
    assert node_ranks_line({"LOCAL_RANK": "0", "RANK": "0"}) is None  # one node: nothing to tell apart
