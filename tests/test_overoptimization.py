"""The over-optimisation math (minirl.rl.overoptimization) against closed forms and enumerations."""

import itertools
import math

import numpy as np
import pytest

from minirl.rl.bandit import Bandit
from minirl.rl.overoptimization import (best_of_n_exact_kl, best_of_n_kl, best_of_n_means, best_of_n_weights,
                                        fit_gold_curve, gold_curve, gold_falls)


def test_analytic_kl_closed_form():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl([4, 256]).tolist() == pytest.approx([math.log(4) - 0.75, math.log(256) - 255 / 256])
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n_kl(0)


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_analytic_kl_bounds_the_exact_kl_on_the_bandit(n):
    """The one-step bandit's π_ref is a 6-outcome categorical: the analytic KL is an upper bound there."""
    bandit = Bandit()
    pi_ref = bandit.distribution(bandit.model())
    exact = best_of_n_exact_kl(pi_ref, bandit.rewards, n)
    assert exact <= best_of_n_kl(n) + 1e-12
    if n > 1:
        assert exact > 0


@pytest.mark.parametrize("n", [2, 4, 16, 256])
def test_analytic_kl_is_the_limit_of_the_exact_kl_on_a_fine_support(n):
    """With many small atoms the scores are nearly continuous and the formula becomes exact."""
    K = 200_000
    rng = np.random.default_rng(0)
    pi_ref = rng.dirichlet(np.full(K, 50.0))
    exact = best_of_n_exact_kl(pi_ref, rng.permutation(K).astype(float), n)
    assert exact == pytest.approx(best_of_n_kl(n), abs=2e-3)


def test_exact_kl_refuses_ties():
    with pytest.raises(ValueError, match="distinct rewards"):
        best_of_n_exact_kl(np.array([0.5, 0.5]), np.array([1.0, 1.0]), 2)


@pytest.mark.parametrize("N,n", [(7, 1), (7, 3), (8, 8), (9, 4)])
def test_subset_weights_match_enumeration(N, n):
    counts = np.zeros(N)
    for subset in itertools.combinations(range(N), n):
        counts[max(subset)] += 1  # indices are ranks by proxy, ascending
    assert best_of_n_weights(N, n) == pytest.approx(counts / counts.sum(), abs=1e-12)


def test_best_of_n_means_match_every_subset():
    rng = np.random.default_rng(1)
    proxy, gold = rng.normal(size=9), rng.normal(size=9)
    got = best_of_n_means(proxy, gold, [1, 3, 9])
    for k, n in enumerate([1, 3, 9]):
        best = [max(s, key=lambda i: proxy[i]) for s in itertools.combinations(range(9), n)]
        assert got["gold"][k] == pytest.approx(gold[best].mean())
        assert got["proxy"][k] == pytest.approx(proxy[best].mean())
    assert got["kl"][0] == 0.0


def test_a_pool_smaller_than_n_names_the_fix():
    with pytest.raises(ValueError, match="raise the pool size"):
        best_of_n_weights(4, 8)


@pytest.mark.parametrize("form,alpha,beta", [("bon", 0.8, 0.3), ("rl", 0.5, 0.2), ("bon", 1.0, -0.1)])
def test_fit_recovers_known_alpha_beta(form, alpha, beta):
    d = np.linspace(0.0, 3.0, 13)
    with np.errstate(divide="ignore", invalid="ignore"):
        gold = d * (alpha - beta * d) if form == "bon" else np.nan_to_num(d * (alpha - beta * np.log(d)))
    assert gold_curve(d, alpha, beta, form) == pytest.approx(gold, abs=1e-12)
    fit = fit_gold_curve(d, gold, form)
    assert (fit["alpha"], fit["beta"]) == pytest.approx((alpha, beta), abs=1e-10)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 12


def test_fit_recovers_alpha_beta_through_noise_and_finds_the_peak():
    rng = np.random.default_rng(2)
    d = np.repeat(np.linspace(0.1, 4.0, 40), 5)
    fit = fit_gold_curve(d, d * (0.6 - 0.15 * d) + rng.normal(0, 0.02, d.size), "bon")
    assert fit["alpha"] == pytest.approx(0.6, abs=0.02) and fit["beta"] == pytest.approx(0.15, abs=0.01)
    assert fit["peak_d"] == pytest.approx(0.6 / 0.3, rel=0.05)
    rl = fit_gold_curve(d, gold_curve(d, 0.4, 0.2, "rl"), "rl")
    assert rl["peak_d"] == pytest.approx(math.exp(0.4 / 0.2 - 1))
    d_grid = np.linspace(0.05, 10, 2000)
    assert d_grid[np.argmax(gold_curve(d_grid, 0.4, 0.2, "rl"))] == pytest.approx(rl["peak_d"], abs=0.01)


def test_fit_needs_points_and_a_known_form():
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_gold_curve([0.0, 1.0], [0.0, 0.5], "bon")
    with pytest.raises(ValueError, match="choose one of bon, rl"):
        fit_gold_curve([1.0, 2.0], [0.1, 0.2], "cubic")


def test_gold_falls_only_beyond_the_error_bars():
    assert gold_falls([0.0, 0.3, 0.5, 0.2])
    assert not gold_falls([0.0, 0.3, 0.5])
    assert not gold_falls([0.0, 0.5, 0.45], stderr=[0.0, 0.05, 0.05])
