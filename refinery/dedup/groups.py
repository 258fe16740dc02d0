"""Turning pairs into groups: connected components, and the keeper of each group."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from refinery.config import KeepConfig
from refinery.features import Features


def components(pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the graph with `pairs` as edges, each sorted, listed by their
    smallest member (nodes without an edge are in none).

    A union-find: networkx did the same but cost 0.24 s to import, a sixth of a cached run.
    """
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs:
        if a == b:
            continue
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def keep_rank(f: Features, min_sharpness: float) -> tuple[bool, int, float, float, int, str]:
    """Sort key of the keep rule, best first: sharp enough; most pixels (the original, not a
    downsized copy); least lossy encoding (a re-encoded JPEG's block edges must not pass for
    detail); most detail (strong edge density); larger file; name."""
    return (f.sharpness < min_sharpness, -f.pixels, f.compression, -f.edge_density, -f.file_size, f.path)


def choose_keeper(members: Sequence[int], features: Sequence[Features], min_sharpness: float) -> int:
    """The member the keep rule prefers; deterministic."""
    return min(members, key=lambda i: keep_rank(features[i], min_sharpness))


def split_of(path: str, splits: Sequence[str]) -> int:
    """The index in `splits` of the first folder of `path` named as one; len(splits) for none."""
    for folder in path.split("/")[:-1]:
        if folder in splits:
            return splits.index(folder)
    return len(splits)


class KeepRule:
    """Which member of a group stays, by the settings (keep.policy, keep.prefer): files under
    the preferred folder first, then the policy, then the best rule (keep_rank) for ties.
    `mtime_ns` is each row's modification time, for oldest and newest."""

    def __init__(self, features: Sequence[Features], mtime_ns: Sequence[int], cfg: KeepConfig):
        self.features, self.mtime_ns, self.cfg = features, mtime_ns, cfg
        self.prefix = cfg.prefer + "/" if cfg.prefer else ""
        self.splits = cfg.split_names()

    def split(self, row: int) -> int:
        """The index of `row`'s split in keep.splits (len(splits): in none)."""
        return split_of(self.features[row].path, self.splits)

    def rank(self, row: int) -> tuple[Any, ...]:
        """The sort key of `row`, best first."""
        f, policy = self.features[row], self.cfg.policy
        preferred = bool(self.prefix) and f.path.startswith(self.prefix)
        if policy == "largest":
            first: tuple[int, ...] = (-f.pixels, -f.file_size)
        elif policy in ("oldest", "newest"):
            first = (self.mtime_ns[row] if policy == "oldest" else -self.mtime_ns[row],)
        else:  # best: the rule alone
            first = ()
        split = split_of(f.path, self.splits) if self.splits else 0
        return (not preferred, split, *first, *keep_rank(f, self.cfg.min_sharpness))

    def choose(self, members: Sequence[int]) -> int:
        return min(members, key=self.rank)

    def kept_because(self, keeper: int, others: Sequence[int]) -> str:
        """Why `keeper` stays rather than `others` (the files removed as its duplicates), in
        words: what the settings chose by, else the first thing the best rule tells them apart
        by against the strongest of them."""
        chosen = self.why(keeper, max(others, key=self.split) if others else None)
        if chosen or not others:
            return chosen
        f = self.features[keeper]
        runner_up = self.features[min(others, key=self.rank)]
        mine, theirs = keep_rank(f, self.cfg.min_sharpness), keep_rank(runner_up, self.cfg.min_sharpness)
        first = next((k for k, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b), len(mine) - 1)
        return (
            "kept: "
            + [
                f"sharp (Laplacian variance {f.sharpness:.0f}; its duplicates under {self.cfg.min_sharpness:g})",
                f"the most pixels ({f.width}x{f.height})",
                "lossless" if f.compression == 0 else "the least lossy encoding",
                f"the most detail (edge density {f.edge_density:.3f})",
                f"the largest file ({f.file_size:,} bytes)",
                "alike in every way: the first by name",
            ][first]
        )

    def why(self, keeper: int, other: int | None = None) -> str:
        """What chose `keeper` when the settings did (a removed file's reason ends with it;
        `other`: that file), else ""."""
        if self.prefix and self.features[keeper].path.startswith(self.prefix):
            return f"kept: in the preferred folder {self.cfg.prefer}/"
        if self.splits and other is not None and self.split(keeper) < self.split(other):
            return f"kept: in the earlier split {self.splits[self.split(keeper)]}"
        words = {"largest": "the largest", "oldest": "the oldest", "newest": "the newest"}
        return f"kept: {words[self.cfg.policy]} of its group" if self.cfg.policy in words else ""


@dataclass
class StarGroup:
    """A keeper and the members removed as its duplicates."""

    keeper: int
    subjects: list[int] = field(default_factory=list)


def star_groups(
    pairs: list[tuple[int, int]], choose: Callable[[list[int]], int], close: Callable[[int, int], bool]
) -> tuple[list[StarGroup], int]:
    """Components of the pair graph, each cut into stars around a keeper.

    Similarity is not transitive: a component can chain A~B~C with A and C unlike. A member
    is removed only if `close(member, keeper)` holds for its group's own keeper; the others
    are released and grouped again among themselves. Returns the groups (with at least one
    subject) and how many times a chain was cut.
    """
    groups: list[StarGroup] = []
    splits = 0
    pending = _split(pairs)
    while pending:
        members, edges = pending.pop()
        keeper = choose(members)
        subjects = [m for m in members if m != keeper and close(m, keeper)]
        rest = set(members) - set(subjects) - {keeper}
        if subjects:
            groups.append(StarGroup(keeper, subjects))
        if rest:
            splits += 1
            pending += _split([(a, b) for a, b in edges if a in rest and b in rest])
    return sorted(groups, key=lambda g: g.keeper), splits


def _split(pairs: list[tuple[int, int]]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Connected components with the edges inside each, so a later cut looks at those only."""
    groups = components(pairs)
    where = {node: k for k, group in enumerate(groups) for node in group}
    edges: list[list[tuple[int, int]]] = [[] for _ in groups]
    for a, b in pairs:
        if a != b:
            edges[where[a]].append((a, b))
    return list(zip(groups, edges, strict=True))


def cover_groups(edges: list[tuple[int, int]], rank: Callable[[int], tuple[Any, ...]]) -> list[tuple[int, list[int]]]:
    """Stars that cover a graph whose edges say "the same": the node with the most neighbours
    left (the most typical; ties go to the best `rank`, which sorts best first) keeps, its
    neighbours go, and so on until no node has a neighbour left. Every removed node is the
    same as its own keeper: no chain A~B~C ever removes C for A."""
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        if a != b:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    heap = [(-len(near), rank(node), node) for node, near in neighbours.items()]
    heapq.heapify(heap)
    gone: set[int] = set()
    groups: list[tuple[int, list[int]]] = []
    while heap:
        degree, key, node = heapq.heappop(heap)
        if node in gone:
            continue
        left = neighbours[node] - gone
        if len(left) != -degree:  # its count went down since it was pushed: queue it again
            if left:
                heapq.heappush(heap, (-len(left), key, node))
            continue
        gone |= left | {node}
        groups.append((node, sorted(left)))
    return sorted(groups)
