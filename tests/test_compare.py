"""Comparison metrics and tolerance judgement, on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from convertctl.evaluate.compare import compare, output_metrics
from convertctl.schema import Tolerance


def test_metrics_known_values():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    act = np.array([[1.0, 2.5, 3.0], [3.0, 2.0, 4.0]], np.float32)
    m = output_metrics(ref, act)
    assert m.max_abs == pytest.approx(3.0)
    assert m.mean_abs == pytest.approx(3.5 / 6)
    assert m.max_rel == pytest.approx(3.0)
    expected_cos = float(ref.ravel() @ act.ravel() / (np.linalg.norm(ref) * np.linalg.norm(act)))
    assert m.cosine == pytest.approx(expected_cos)
    assert m.top1_agreement == 0.5  # row 0 argmax 2 == 2; row 1 argmax 0 != 2
    assert m.finite


def test_identical_outputs_pass_strictest_tolerance():
    a = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    cmp = compare("ref", ["y"], [a], [a.copy()], Tolerance(min_cosine=1.0, max_abs=0.0, min_top1_agreement=1.0))
    assert cmp.passed is True and cmp.failures == []
    assert cmp.outputs["y"].cosine == pytest.approx(1.0)


def test_each_bound_is_enforced():
    ref = np.eye(4, dtype=np.float32)
    act = ref[::-1].copy()  # every arg-max moves
    cmp = compare("ref", ["y"], [ref], [act], Tolerance(min_cosine=0.5, max_abs=0.5, min_top1_agreement=0.9))
    assert cmp.passed is False
    text = " ".join(cmp.failures)
    assert "cosine" in text and "max abs error" in text and "top-1 agreement 0.000" in text


def test_nan_fails_even_without_tolerance():
    ref = np.ones((2, 3), np.float32)
    act = ref.copy()
    act[0, 0] = np.nan
    cmp = compare("ref", ["y"], [ref], [act])
    assert cmp.passed is False and "NaN" in cmp.failures[0]


def test_shape_mismatch_and_output_count():
    cmp = compare("ref", ["y"], [np.zeros((2, 3))], [np.zeros((3, 2))], Tolerance(min_cosine=0.9))
    assert cmp.passed is False and "shape" in cmp.failures[0]
    cmp = compare("ref", ["y"], [np.zeros(3)], [], Tolerance(min_cosine=0.9))
    assert cmp.passed is False and "0 outputs" in cmp.failures[0]


def test_no_tolerance_is_informative():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    cmp = compare("ref", ["y"], [a], [a + 1])
    assert cmp.passed is None and cmp.outputs["y"].max_abs == pytest.approx(1.0)


def test_sqnr_known_value():
    ref = np.array([3.0, 4.0], np.float32)  # |ref|^2 = 25
    act = np.array([3.0, 4.5], np.float32)  # noise 0.25 -> SQNR = 10*log10(100) = 20 dB
    m = output_metrics(ref, act)
    assert m.sqnr_db == pytest.approx(20.0, abs=1e-4)
    cmp = compare("ref", ["y"], [ref], [act], Tolerance(min_sqnr_db=30))
    assert cmp.passed is False and "SQNR 20.0 dB < 30" in cmp.failures[0]
    assert output_metrics(ref, ref.copy()).sqnr_db is None  # identical: infinite SQNR, recorded as None
