from __future__ import annotations

from luno_wf._graph import Graph


def test_graph_info_matches_luno() -> None:
    g = Graph()
    for a, b in [(1, 2), (2, 3), (3, 4), (1, 5)]:
        g.add(a, b)
    assert g.starting() == [1]
    assert g.terminal() == [4, 5]
    assert g.nodes() == [1, 2, 3, 4, 5]
    assert g.transitions(1) == [2, 5]
    assert g.allows(2, 3) and not g.allows(3, 2)
    assert g.is_terminal(4) and not g.is_terminal(3)
    assert not g.is_valid(9)


def test_self_loop_node_is_not_a_start() -> None:
    g = Graph()
    g.add(1, 1)
    assert g.starting() == []
