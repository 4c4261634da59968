"""Pareto dominance for two or more objectives, all to be minimised: sorting and hypervolume.

Plain Python, said once: the rung scheduler ranks trials with it, the tracking side draws and
stores the front with it, the benchmark scores searches with it. A caller turns an objective to
maximise into one to minimise by negating it (`minimised`).
"""
from __future__ import annotations

import math
from typing import Sequence

Point = Sequence[float]


def minimised(values: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    """`values` with those to maximise ("max") negated, so that smaller is better in each."""
    return tuple(-v if d == "max" else v for v, d in zip(values, directions))


def dominates(a: Point, b: Point) -> bool:
    """Whether `a` is no worse than `b` in every objective and better in one (minimising)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def ranks(points: Sequence[Point]) -> list[int]:
    """Each point's non-dominated front, 0 for the Pareto front (NSGA-II's sorting)."""
    rank = [-1] * len(points)
    left, level = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        front = front or set(left)  # only a dominance with cycles (a bug) finds none: end anyway
        for i in front:
            rank[i] = level
        left -= front
        level += 1
    return rank


def front(points: Sequence[Point]) -> list[int]:
    """The indices of the non-dominated points, in the order given."""
    return [i for i, r in enumerate(ranks(points)) if r == 0]


def crowding(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point among `points` (one front): larger is more
    isolated, the ends of each objective infinite; what breaks ties within a front."""
    n = len(points)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for k in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][k])
        low, high = points[order[0]][k], points[order[-1]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for before, i, after in zip(order, order[1:], order[2:]):
            distance[i] += (points[after][k] - points[before][k]) / (high - low)
    return distance


def ranking_keys(points: Sequence[Point]) -> list[tuple[int, float]]:
    """Each point's (front, minus its crowding distance): smaller is better, equal is a tie."""
    rank = ranks(points)
    spread: dict[int, float] = {}
    for level in set(rank):
        members = [i for i in range(len(points)) if rank[i] == level]
        spread.update(zip(members, crowding([points[i] for i in members])))
    return [(rank[i], -spread[i]) for i in range(len(points))]


def order(points: Sequence[Point]) -> list[int]:
    """Indices from best to worst: by front, then the more isolated first within a front."""
    keys = ranking_keys(points)
    return sorted(range(len(points)), key=lambda i: (keys[i], i))


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The area (two objectives, minimised) that `points` dominate up to `reference`; points not
    strictly better than the reference in both objectives add nothing."""
    inside = sorted((p[0], p[1]) for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, ceiling = 0.0, reference[1]
    for x, y in inside:  # by the first objective; each step adds the strip below the last
        if y < ceiling:
            area += (reference[0] - x) * (ceiling - y)
            ceiling = y
    return area
