"""Pareto dominance (searcher.pareto): the front, its ranks, crowding, order and hypervolume,
on hand-made points whose answers are worked out below, and against Optuna's hypervolume."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume  # private, but the reference to agree with

from searcher.pareto import crowding, dominates, front, hypervolume, minimised, order, ranks

# Minimised in both objectives; the reference point is (10, 10).
POINTS = [
    (1, 8),   # 0 A: the best in the first objective
    (2, 5),   # 1 B
    (2, 5),   # 2 C: B's duplicate; neither dominates the other, both are on the front
    (4, 5),   # 3 D: ties B in the second objective, worse in the first: dominated by B
    (5, 2),   # 4 E
    (3, 6),   # 5 F: dominated by B; D and F do not dominate each other (front 1)
    (12, 1),  # 6 G: the best in the second objective, outside the reference in the first
    (6, 6),   # 7 H: dominated by D and F (front 2); F ties it in the second objective
]
REFERENCE = (10, 10)


def test_dominance_needs_one_strictly_better_objective():
    assert dominates((2, 5), (4, 5))  # a tie in one objective, better in the other
    assert not dominates((2, 5), (2, 5))  # a duplicate does not dominate
    assert not dominates((4, 5), (3, 6))
    assert not dominates((4, 5), (2, 5))


def test_minimised_negates_what_is_maximised():
    assert minimised((0.9, 3.0), ("max", "min")) == (-0.9, 3.0)
    assert minimised((0.4, 3.0), ("min", "min")) == (0.4, 3.0)


def test_front_keeps_duplicates_and_the_point_outside_the_reference():
    # The front does not depend on the reference: G is the fastest, so nothing dominates it.
    assert front(POINTS) == [0, 1, 2, 4, 6]
    assert front([]) == []
    assert front([(3, 3)]) == [0]


def test_ranks_sort_the_points_into_successive_fronts():
    assert ranks(POINTS) == [0, 0, 0, 1, 0, 1, 0, 2]


def test_crowding_makes_each_objectives_ends_infinite():
    members = [POINTS[i] for i in front(POINTS)]  # A, B, C, E, G
    distance = crowding(members)
    assert distance[0] == math.inf and distance[4] == math.inf  # A and G end both objectives
    # E sits between C and G in the first objective (range 11), between G and B in the second
    # (range 7).
    assert distance[3] == pytest.approx((12 - 2) / 11 + (5 - 1) / 7)
    assert distance[1] == pytest.approx((2 - 1) / 11 + (5 - 2) / 7)
    assert crowding([(1, 2), (2, 1)]) == [math.inf, math.inf]


def test_order_is_by_front_then_the_more_isolated_first():
    # Front 0: A and G (infinite; by index), then E, C, B by falling crowding; front 1: D and F
    # (two points: both infinite); front 2: H.
    assert order(POINTS) == [0, 6, 4, 2, 1, 3, 5, 7]


def test_hypervolume_is_the_area_dominated_up_to_the_reference():
    # By horizontal strips: y in [8, 10] from A (width 9), [5, 8] from B (width 8), [2, 5] from
    # E (width 5); the duplicate and the dominated points add nothing, and G lies outside.
    assert hypervolume(POINTS, REFERENCE) == pytest.approx(9 * 2 + 8 * 3 + 5 * 3)
    assert hypervolume([(12, 1), (10, 3), (3, 10)], REFERENCE) == 0.0  # none strictly inside
    assert hypervolume([], REFERENCE) == 0.0


def test_hypervolume_agrees_with_optuna():
    inside = [p for p in POINTS if p[0] <= REFERENCE[0] and p[1] <= REFERENCE[1]]
    assert hypervolume(POINTS, REFERENCE) == pytest.approx(
        compute_hypervolume(np.array(inside, dtype=float), np.array(REFERENCE, dtype=float)))
    rng = random.Random(0)
    for _ in range(50):  # small integers give duplicates and ties in plenty
        points = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(1, 12))]
        ours = hypervolume(points, REFERENCE)
        theirs = compute_hypervolume(np.array(points, dtype=float),
                                     np.array(REFERENCE, dtype=float))
        assert ours == pytest.approx(theirs), points
