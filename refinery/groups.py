"""Turning pairs into groups: connected components, and the keeper of each group."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from refinery.features import Features


def components(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the graph on 0..n-1 with `pairs` as edges (size > 1 only),
    each sorted, listed by their smallest member."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_edges_from((int(a), int(b)) for a, b in pairs if a != b)
    groups = [sorted(c) for c in nx.connected_components(graph) if len(c) > 1]
    return sorted(groups, key=lambda g: g[0])


def keep_rank(f: Features, min_sharpness: float) -> tuple:
    """Sort key of the keep rule, best first: sharp enough; most pixels (the original, not a
    downsized copy); least lossy encoding (a re-encoded JPEG's block edges must not pass for
    detail); most detail (Canny edge density); larger file; name."""
    return (f.sharpness < min_sharpness, -f.pixels, f.compression, -f.edge_density, -f.file_size, f.path)


def choose_keeper(members: Sequence[int], features: Sequence[Features], min_sharpness: float) -> int:
    """The member the keep rule prefers; deterministic."""
    return min(members, key=lambda i: keep_rank(features[i], min_sharpness))



@dataclass
class StarGroup:
    """A keeper and the members removed as its duplicates."""

    keeper: int
    subjects: list[int] = field(default_factory=list)


def star_groups(n: int, pairs: list[tuple[int, int]], choose: Callable[[list[int]], int],
                close: Callable[[int, int], bool]) -> tuple[list[StarGroup], int]:
    """Components of the pair graph, each cut into stars around a keeper.

    Similarity is not transitive: a component can chain A~B~C with A and C unlike. A member
    is removed only if `close(member, keeper)` holds for its group's own keeper; the others
    are released and grouped again among themselves. Returns the groups (with at least one
    subject) and how many times a chain was cut.
    """
    groups: list[StarGroup] = []
    splits = 0
    pending = components(n, pairs)
    while pending:
        members = pending.pop()
        keeper = choose(members)
        subjects = [m for m in members if m != keeper and close(m, keeper)]
        rest = set(members) - set(subjects) - {keeper}
        if subjects:
            groups.append(StarGroup(keeper, subjects))
        if rest:
            splits += 1
            pending += components(n, [(a, b) for a, b in pairs if a in rest and b in rest])
    return sorted(groups, key=lambda g: g.keeper), splits
