"""The Pareto-front arithmetic P5 and P6 report (bench/pareto.py), on hand-computed fronts."""

import math

from bench import pareto


POINTS = [(0.9, -5.0), (0.8, -2.0), (0.5, -1.0), (0.6, -3.0), (0.5, -1.5)]


def test_front_keeps_only_non_dominated_points():
    assert pareto.front(POINTS) == [(0.5, -1.0), (0.8, -2.0), (0.9, -5.0)]


def test_area_is_the_union_of_the_rectangles_to_the_reference_corner():
    # [0, .9] x [-6, -5] + [0, .8] x [-5, -2] + [0, .5] x [-2, -1] = 0.9 + 2.4 + 0.5
    assert math.isclose(pareto.area(POINTS, (0.0, -6.0)), 3.8)
    assert math.isclose(pareto.area(POINTS, (0.7, -6.0)), 0.2 * 1 + 0.1 * 3)  # points left of the corner count 0
    assert pareto.area([(0.5, -7.0)], (0.0, -6.0)) == 0.0


def test_dominance_is_weak_and_needs_a_difference():
    a = [(0.9, -1.0), (0.5, 0.0)]
    assert pareto.dominates(a, [(0.8, -1.0), (0.5, -0.5)])
    assert not pareto.dominates([(0.8, -1.0), (0.5, -0.5)], a)
    assert not pareto.dominates(a, a)
    assert not pareto.dominates(a, [(0.95, -3.0)])  # a point of b with more utility than any of a


def test_log_fq_caps_at_one_and_floors_zero():
    assert pareto.log_fq(1.0) == 0.0 and pareto.log_fq(1e-5) == -5.0
    assert pareto.log_fq(0.0) == -300.0 and pareto.log_fq(None) is None


def test_compare_on_means_and_per_seed():
    def side(points_by_lr):
        return {lr: {"seeds": [0, 1], "runs": runs} for lr, runs in points_by_lr.items()}

    a = side({1e-4: [(0.9, -4.0), (0.9, -6.0)], 1e-3: [(0.7, -1.0), (0.5, -1.0)]})
    b = side({1e-4: [(0.9, -5.0), (0.9, -7.0)], 1e-3: [(0.6, -2.0), (0.6, -2.0)]})
    out = pareto.compare(a, b, reference=(0.0, -8.0), min_utility=0.8)
    assert out["means"]["a_dominates_b"] and not out["means"]["b_dominates_a"]
    assert out["means"]["best_log10_fq_a_minus_b"] == 1.0
    # seed 0: a's front (0.9,-4),(0.7,-1) covers b's (0.9,-5),(0.6,-2); seed 1: b's (0.6,-2) has more utility
    # than a's (0.5,-1) and more FQ than a's (0.9,-6)
    assert out["seeds_a_dominates_b"] == 1 and out["seeds_b_dominates_a"] == 0
    seed0 = (0.9 * 4 + 0.7 * 3) - (0.9 * 3 + 0.6 * 3)
    seed1 = (0.9 * 2 + 0.5 * 5) - (0.9 * 1 + 0.6 * 5)
    assert [round(x, 12) for x in out["area_a_minus_b_per_seed"]] == [round(seed0, 12), round(seed1, 12)]
