"""The registry gate as a pure function: bootstrap intervals and the promotion decision."""

import math

import numpy as np
import pytest

from distill.config.schema import RegisterConfig
from distill.evaluation.gate import Interval, decide, paired_bootstrap
from distill.evaluation.labelled import ClassificationEvaluator

SETS = [("topics", ClassificationEvaluator.primary_on)]


def correct(fraction: float, n: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"topics": {"correct": (rng.random(n) < fraction).astype(float)}}


def interval(student, rival):
    return paired_bootstrap(student, rival, SETS, resamples=500, confidence=0.95, seed=1)


def metrics(student=80.0, baseline=78.0) -> dict:
    return {"student/mean_score": student, "baseline/mean_score": baseline}


def test_bootstrap_is_paired_and_seeded():
    base = correct(0.7)
    better = {"topics": {"correct": np.maximum(base["topics"]["correct"], correct(0.2, seed=5)["topics"]["correct"])}}
    first, again = interval(better, base), interval(better, base)
    assert first == again
    assert first.low > 0 and first.difference == pytest.approx(
        100 * (better["topics"]["correct"].mean() - base["topics"]["correct"].mean()))


def test_better_beyond_noise_is_promoted():
    versus = interval(correct(0.9, seed=1), correct(0.6, seed=2))
    decision = decide(metrics(), RegisterConfig(), versus, None)
    assert decision.promote and "no champion yet" in decision.reason


def test_better_within_noise_is_not_promoted():
    base = correct(0.7, n=60)
    flip = base["topics"]["correct"].copy()
    flip[np.flatnonzero(flip == 0)[:2]] = 1  # two more right answers out of 60
    versus = interval({"topics": {"correct": flip}}, base)
    assert versus.difference > 0 and versus.low <= 0
    decision = decide(metrics(), RegisterConfig(), versus, None)
    assert not decision.promote and "does not beat the undistilled student beyond noise" in decision.reason


def test_worse_than_the_undistilled_student_is_not_promoted():
    versus = interval(correct(0.5, seed=1), correct(0.8, seed=2))
    decision = decide(metrics(75.0, 78.0), RegisterConfig(), versus, None)
    assert not decision.promote and "undistilled student" in decision.reason


def test_must_also_beat_the_champion():
    good = Interval(3.0, 1.0, 5.0, 0.95, 1000)
    tied = Interval(0.5, -1.0, 2.0, 0.95, 1000)
    decision = decide(metrics(), RegisterConfig(), good, tied)
    assert not decision.promote and "the champion" in decision.reason
    assert decide(metrics(), RegisterConfig(), good, good).promote


def test_min_improvement_raises_the_bar():
    versus = Interval(3.0, 1.0, 5.0, 0.95, 1000)
    assert not decide(metrics(), RegisterConfig(min_improvement=2.0), versus, None).promote


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_metric_never_passes(bad):
    good = Interval(3.0, 1.0, 5.0, 0.95, 1000)
    decision = decide(metrics(student=bad), RegisterConfig(), good, None)
    assert not decision.promote and "not a finite number" in decision.reason
    floors = RegisterConfig(min_metrics={"student/topics/accuracy": 50.0})
    decision = decide({**metrics(), "student/topics/accuracy": math.nan}, floors, good, None)
    assert not decision.promote and "student/topics/accuracy" in decision.reason
    nan_interval = Interval(math.nan, math.nan, math.nan, 0.95, 1000)
    assert not decide(metrics(), RegisterConfig(), nan_interval, None).promote


def test_missing_metric_is_a_reason():
    good = Interval(3.0, 1.0, 5.0, 0.95, 1000)
    decision = decide({"student/mean_score": 80.0}, RegisterConfig(), good, None)
    assert not decision.promote and "baseline/mean_score is missing" in decision.reason


def test_different_items_cannot_be_compared():
    with pytest.raises(ValueError, match="different items"):
        interval(correct(0.9, n=100), correct(0.9, n=120))
