"""TRPO for language models (Schulman et al. 2015, "Trust Region Policy Optimization"), MATH.md §4.

One update maximises the surrogate advantage inside a trust region on the mean KL:

    max_θ L(θ) = mean_m[ρ_t A_t],   ρ_t = exp(log π_θ(a_t|s_t) − log π_old(a_t|s_t))
    s.t.  KL̄(θ) = mean_m[Σ_v π_old(v|s_t) (log π_old(v|s_t) − log π_θ(v|s_t))] ≤ δ

KL̄ is the *full-distribution* KL at each response state, read from the logits, not a
sampled estimate. Linearising L and taking KL̄ to second order at θ_old (where its
gradient is 0 and its Hessian is the Fisher matrix F) gives the natural-gradient step:

1. ``g = ∇L(θ_old)``;
2. solve ``(F + λI) s = g`` by conjugate gradient, touching F only through products Fv;
3. full step ``Δθ = √(2δ / sᵀFs)·s``, the point along s where ``½ΔθᵀFΔθ = δ``;
4. backtrack ``θ_old + α^k Δθ`` (k = 0, 1, …) until L improves *and* the exact KL̄ ≤ δ;
   if no k is accepted, θ stays θ_old.

Fisher-vector products, in Gauss–Newton form (Martens 2010; Schraudolph 2002). With
``z_t = f(θ)_t/τ`` the logits at response state t and ``J_t = ∂z_t/∂θ``, KL_t depends on θ only
through z_t, and ∂KL_t/∂z_t = 0 at θ_old, so the Hessian of KL̄ there has no second-derivative-
of-the-network term and is exactly

    F = mean_m[J_tᵀ (diag p_t − p_t p_tᵀ) J_t],   p_t = π_old(·|s_t),

the softmax Fisher (diag p − p pᵀ) pulled back through the network. One product is then
``Jv`` (how the logits move along v), the per-token softmax Fisher, and one backward pass:
``Fv = Jᵀu`` with ``u_t = (m_t/Σm)·(p_t ⊙ Jv_t − p_t (p_tᵀ Jv_t))``, the gradient of
``Σ z·sg(u)``. The backward runs through the graph of z(θ_old) kept from the pass that gave
g, so a product costs one backward and, for Jv, the central difference of the logits

    Jv ≈ (z(θ + εv) − z(θ − εv)) / 2ε,   ε = ε_rel·(1 + ‖θ‖)/‖v‖,

two forward passes without a graph. ε is sized relative to θ (Nocedal & Wright §8.1), so the
perturbation is neither lost in θ's rounding nor large against its scale, whatever ‖v‖ CG
passes. The central difference errs c·ε_rel² (truncation) + eps_mach/ε_rel (rounding); the
logits bend faster along v than ‖θ‖ suggests (c ≈ 50–100, measured on the tests' GPTs and on the
default card), so ``ε_rel = (eps_mach/100)^(1/3)`` balances the two: 1e-3 in float32, where
Fv is within ~1e-4 of the exact product (bandit and tests' GPT; Jv ~6e-5 on the card), and
1.3e-6 in float64 (~1e-9). eps_mach^(1/3) itself errs ~1e-3 in float32; a one-sided
difference saves a forward pass but errs O(ε), at best ~1e-3 in float32. Differencing only
the logits is what makes float32 enough (a difference of KL̄'s *gradients* erred ~1e-2), so
the whole update (passes, CG vectors, line search) runs in the parameters' dtype, float32;
``float64=True`` casts them for the update and back, each line-search candidate rounded to
their dtype before it is checked, so the accepted KL̄ is always that of the weights kept.

The damping λ only regularises the solve (Spinning Up's default 0.1); the step is scaled
with the undamped sᵀFs, so the quadratic model puts the full step on the boundary δ.

Value model: optional, as in PPO. With one, advantages are GAE on the rollout's values,
and after the policy step the critic takes `value_epochs` full-batch steps on
``½·mean_m[(V(s_t) − R_t)²]`` with its own optimizer (TRPO never uses an optimizer for
the policy). Without one, advantages are the whitened returns.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from minirl import backend, nn
from minirl import functional as F
from minirl.indexing import gather
from minirl.model import positions_from_mask
from minirl.rl.kl import KL_ESTIMATORS
from minirl.rl.losses import explained_variance, masked_mean
from minirl.rl.pg import rollout_stats
from minirl.rl.ppo import advantages_and_returns
from minirl.rl.rollout import Rollout, state_values
from minirl.tensor import Tensor, no_grad
from minirl.validation import check_ranges


@dataclass
class TRPOConfig:
    max_kl: float = 0.01
    """δ: the trust region, a bound on the mean per-token KL(π_old‖π_θ) in nats"""
    cg_iters: int = 10
    """conjugate-gradient iterations for (F + λI) s = g"""
    cg_damping: float = 0.1
    """λ: F from one batch is singular (rank ≤ tokens·(V−1)); λI keeps the solve well posed"""
    cg_residual_tol: float = 1e-10
    """stop CG early once ‖g − (F + λI)s‖ ≤ this × ‖g‖"""
    backtrack_iters: int = 10
    """most step fractions the line search tries"""
    backtrack_ratio: float = 0.5
    """α: each retry shrinks the step by this factor"""
    fvp_eps: float | None = None
    """ε_rel of Jv's central difference of the logits; None: (eps_mach/100)^(1/3) of the working dtype"""
    float64: bool = False
    """run the update's passes in float64 (Fv to ~1e-8 instead of ~1e-4; about twice the time on a CPU)"""
    whiten_advantages: bool = True
    """normalise advantages over the batch's response tokens"""
    temperature: float = 1.0
    """sampling temperature τ; log π and KL̄ are taken at logits/τ"""
    kl_coef: float = 0.05
    """β: per-token KL penalty to the reference in the reward (the rollout's, not the trust region)"""
    kl_estimator: str = "k1"
    """k1, k2 or k3 for that penalty"""
    gamma: float = 1.0
    """discount over response tokens"""
    lam: float = 0.95
    """GAE λ (with a value model)"""
    value_epochs: int = 5
    """full-batch regression steps of the value model per update (with a value model)"""

    def __post_init__(self):
        check_ranges(self, kl_coef="[0, inf)", gamma="[0, 1]", lam="[0, 1]", temperature="(0, inf)",
                     fvp_eps="(0, inf)")
        if not self.max_kl > 0:
            raise ValueError(f"TRPOConfig.max_kl (δ) must be > 0, got {self.max_kl}: it is the trust region's radius.")
        if self.cg_iters < 1 or self.backtrack_iters < 1 or self.value_epochs < 0:
            raise ValueError(f"TRPOConfig needs cg_iters >= 1, backtrack_iters >= 1 and value_epochs >= 0, got "
                             f"{self.cg_iters}, {self.backtrack_iters}, {self.value_epochs}.")
        if not (0 < self.backtrack_ratio < 1 and self.cg_damping >= 0 and self.cg_residual_tol >= 0):
            raise ValueError(f"TRPOConfig needs 0 < backtrack_ratio < 1, cg_damping >= 0, cg_residual_tol >= 0; got "
                             f"{self.backtrack_ratio}, {self.cg_damping}, {self.cg_residual_tol}.")
        if self.fvp_eps is not None and not 0 < self.fvp_eps < 1:
            raise ValueError(f"TRPOConfig.fvp_eps must be in (0, 1) or None, got {self.fvp_eps}.")
        if self.temperature <= 0 or self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"TRPOConfig needs temperature > 0 and kl_estimator in {KL_ESTIMATORS}, got "
                             f"{self.temperature}, {self.kl_estimator!r}.")


def conjugate_gradient(fvp, b, iters: int = 10, residual_tol: float = 1e-10):
    """Solve ``A x = b`` for symmetric positive-definite A, seen only through ``fvp(v) = A v``.

    Hestenes & Stiefel (1952): from x = 0, r = p = b, each iteration takes
    ``α = rᵀr / pᵀAp``, ``x += α p``, ``r −= α Ap``, ``p = r + (r'ᵀr' / rᵀr) p``. In exact
    arithmetic it is done after n = len(b) iterations; it stops sooner once
    ``‖r‖ ≤ residual_tol·‖b‖``, or if a direction shows no positive curvature (pᵀAp ≤ 0,
    which rounding in a finite-difference A can cause). Returns ``(x, ‖r‖/‖b‖)``, with r
    the recursively updated residual (equal to b − Ax in exact arithmetic).
    """
    xp = backend.get_array_module(b)
    x = xp.zeros_like(b)
    b_norm = float(xp.linalg.norm(b))
    if b_norm == 0:
        return x, 0.0
    r, p = b.copy(), b.copy()
    rr = float(r @ r)
    for _ in range(iters):
        if math.sqrt(rr) <= residual_tol * b_norm:
            break
        Ap = fvp(p)
        pAp = float(p @ Ap)
        if not pAp > 0:
            break
        alpha = rr / pAp
        x += alpha * p
        r -= alpha * Ap
        rr, rr_old = float(r @ r), rr
        p = r + (rr / rr_old) * p
    return x, math.sqrt(rr) / b_norm


def gauss_newton_fvp(logits: Tensor, forward, params, mask, rel_eps: float):
    """``v ↦ Fv = Jᵀ[(m/Σm)·(diag p − p pᵀ)(Jv)]`` at the parameters' current θ (see the module docstring).

    `logits` is z(θ) (B, T, V) with its graph, which every product backpropagates through and keeps;
    `forward()` is the same forward pass without a graph at whatever `params` hold; `mask` (B, T)
    marks the tokens KL̄ averages over.
    """
    xp = backend.get_array_module(logits.data)
    probs = F.softmax_probs(logits.data)  # (B, T, V): p_t = π_old(·|s_t)
    mask = xp.asarray(mask).astype(probs.dtype)
    weights = (mask / max(float(mask.sum()), 1.0))[..., None]  # (B, T, 1): m_t/Σm, KL̄'s masked mean
    theta, saved = nn.parameters_to_vector(params), [p.data for p in params]
    theta_norm = float(xp.linalg.norm(theta))

    def logits_at(theta_moved):
        nn.vector_to_parameters(theta_moved, params)
        with no_grad():
            return forward().data

    def fvp(v):
        v_norm = float(xp.linalg.norm(v))
        if v_norm == 0:
            return xp.zeros_like(v)
        eps = rel_eps * (1.0 + theta_norm) / v_norm
        jv = (logits_at(theta + eps * v) - logits_at(theta - eps * v)) / (2.0 * eps)  # (B, T, V): Jv
        for p, data in zip(params, saved):  # back to θ itself, the point the graph of z was built at
            p.data = data
        u = weights * probs * (jv - (probs * jv).sum(axis=-1, keepdims=True))  # (B, T, V): (diag p − p pᵀ)Jv
        for p in params:
            p.grad = None
        logits.backward(u, retain_graph=True)  # Jᵀu: the gradient of Σ z·sg(u)
        return _flat_grad(params)

    return fvp


def backtracking_line_search(evaluate, theta_old, full_step, surrogate_old: float, max_kl: float,
                             ratio: float = 0.5, iters: int = 10):
    """Try ``θ_old + α^k Δθ`` for k = 0 … iters−1; accept the first with ``L > L(θ_old)`` and ``KL̄ ≤ δ``.

    `evaluate(θ)` returns ``(L(θ), KL̄(θ))``. Returns ``(θ, stats)``: θ_old itself when none is accepted.
    """
    for k in range(iters):
        theta = theta_old + ratio ** k * full_step
        surrogate, kl = evaluate(theta)
        if surrogate > surrogate_old and kl <= max_kl:
            return theta, {"surrogate_after": surrogate, "kl": kl, "step_fraction": ratio ** k,
                           "backtracks": k, "accepted": True}
    return theta_old, {"surrogate_after": surrogate_old, "kl": 0.0, "step_fraction": 0.0,
                       "backtracks": iters, "accepted": False}


def policy_logits(policy, tokens, attention_mask, temperature: float = 1.0) -> Tensor:
    """``z = logits/τ`` for every predicted token, as `GPT.logprobs` takes them: (B, T) -> (B, T−1, V).

    Entry t−1 scores the token t was drawn from, so it lines up with ``tokens[:, 1:]``.
    """
    mask = backend.xp().asarray(attention_mask).astype(bool)[:, :-1]  # (B, T−1)
    logits = policy(tokens[:, :-1], key_mask=mask, positions=positions_from_mask(mask))  # (B, T−1, V)
    return logits / temperature if temperature != 1.0 else logits


def policy_log_dist(policy, tokens, attention_mask, temperature: float = 1.0) -> Tensor:
    """``log π_θ(·|s_t) = log_softmax(z)`` for every predicted token: (B, T) -> (B, T−1, V)."""
    return F.log_softmax(policy_logits(policy, tokens, attention_mask, temperature))


def surrogate_advantage(logprobs: Tensor, old_logprobs, advantages, mask):
    """``L = mean_m[ρ_t A_t]``, ``ρ_t = exp(log π_θ(a_t|s_t) − log π_old(a_t|s_t))``: the objective TRPO *maximises*."""
    surrogate = masked_mean((logprobs - old_logprobs).exp() * advantages, mask)
    return surrogate, {"surrogate": surrogate.item()}


def mean_kl(log_dist: Tensor, old_log_dist, mask):
    """``KL̄ = mean_m[Σ_v π_old(v|s_t) (log π_old(v|s_t) − log π_θ(v|s_t))]``, from full distributions (B, T, V)."""
    old_probs = backend.get_array_module(old_log_dist).exp(old_log_dist)  # (B, T, V)
    per_token = ((old_log_dist - log_dist) * old_probs).sum(axis=-1)  # (B, T)
    kl = masked_mean(per_token, mask)
    return kl, {"kl": kl.item()}


def _flat_grad(params):
    """∂/∂θ as one flat array, in `parameters_to_vector` order (0 for unused parameters)."""
    xp = backend.xp()
    return xp.concatenate([(p.grad if p.grad is not None else xp.zeros_like(p.data)).reshape(-1) for p in params])


@contextlib.contextmanager
def _working_dtype(params, dtype):
    """Run the block with the parameters cast to `dtype`, cast back after; on an error, restore them untouched."""
    saved = [p.data for p in params]
    for p in params:
        p.data = p.data.astype(dtype, copy=False)
    try:
        with backend.dtype_context(dtype):
            yield
    except BaseException:
        for p, data in zip(params, saved):
            p.data = data
        raise
    for p, data in zip(params, saved):
        p.data, p.grad = p.data.astype(data.dtype, copy=False), None


def trpo_update(policy, rollout: Rollout, config: TRPOConfig, value_model=None, value_optimizer=None) -> dict:
    """One TRPO step of `policy` on a rollout sampled by it (π_old = the current policy); returns its metrics:

    ``surrogate_before``/``surrogate_after`` (L at θ_old and at the accepted θ), ``kl`` (the accepted KL̄,
    0 if none), ``step_size`` (‖θ − θ_old‖), ``step_fraction`` (α^k), ``backtracks``, ``accepted``,
    ``cg_residual`` (‖g − (F + λI)s‖/‖g‖), ``expected_improvement`` (gᵀΔθ of the full step), ``grad_norm``,
    ``entropy`` of π_old, the value-model metrics, and `rollout_stats`.
    """
    if (value_model is None) != (rollout.values is None):
        raise ValueError("pass a value model exactly when the rollout was collected with one.")
    if value_model is not None and value_optimizer is None:
        raise ValueError("a value model needs its own value_optimizer: TRPO does not step the critic with the policy.")
    if any(isinstance(m, nn.Dropout) and m.training and m.p > 0 for m in policy.modules()):
        raise ValueError("TRPO's finite differences need a deterministic forward pass: call policy.eval() "
                         "(or build the policy with dropout=0).")
    advantages, returns = advantages_and_returns(rollout, config)
    tokens, attention = rollout.tokens, rollout.attention_mask
    actions, mask, adv = tokens[:, 1:, None], rollout.response_mask[:, 1:], advantages[:, 1:]  # (B, T−1[, 1])
    xp, params = backend.xp(), policy.parameters()
    work = np.float64 if config.float64 else params[0].dtype
    rel_eps = config.fvp_eps or (float(np.finfo(work).eps) / 100) ** (1 / 3)  # see the module docstring
    param_dtype = np.result_type(*[p.dtype for p in params])

    def logits() -> Tensor:
        return policy_logits(policy, tokens, attention, config.temperature)  # (B, T−1, V)

    def log_dist_at(theta) -> Tensor:
        nn.vector_to_parameters(theta, params)
        return F.log_softmax(logits())

    def evaluate(theta):  # rounded to the parameters' dtype first: the KL̄ checked is that of the weights kept
        theta = theta.astype(param_dtype).astype(work)
        with no_grad():
            log_dist = log_dist_at(theta)
            surrogate, _ = surrogate_advantage(gather(log_dist, actions)[..., 0], old_logprobs, adv, mask)
            kl, _ = mean_kl(log_dist, old_log_dist, mask)
        return surrogate.item(), kl.item()

    with _working_dtype(params, work):
        theta_old = nn.parameters_to_vector(params)  # (N,)
        z = logits()  # (B, T−1, V), its graph kept for every Fisher-vector product
        log_dist = F.log_softmax(z)  # (B, T−1, V)
        old_log_dist = log_dist.data
        logprobs = gather(log_dist, actions)[..., 0]  # (B, T−1): log π_θ(a_t|s_t)
        old_logprobs = logprobs.data  # so ρ ≡ 1 exactly at θ_old
        adv = adv.astype(work)
        surrogate, stats = surrogate_advantage(logprobs, old_logprobs, adv, mask)
        policy.zero_grad()
        surrogate.backward(retain_graph=True)
        g = _flat_grad(params)  # (N,)
        fvp = gauss_newton_fvp(z, logits, params, mask, rel_eps)

        def damped_fvp(v):
            return fvp(v) + config.cg_damping * v

        s, cg_residual = conjugate_gradient(damped_fvp, g, config.cg_iters, config.cg_residual_tol)
        shs = float(s @ (damped_fvp(s) - config.cg_damping * s))  # sᵀFs, undamped: the step reaches δ in F's metric
        has_step = shs > 0 and math.isfinite(shs)  # False when g = 0 (every advantage 0): nowhere to step
        full_step = math.sqrt(2 * config.max_kl / shs) * s if has_step else s * 0
        theta, search = backtracking_line_search(evaluate, theta_old, full_step, stats["surrogate"], config.max_kl,
                                                 config.backtrack_ratio, config.backtrack_iters if has_step else 0)
        nn.vector_to_parameters(theta.astype(param_dtype).astype(work), params)
        entropy = float(masked_mean(-(xp.exp(old_log_dist) * old_log_dist).sum(axis=-1), mask))
        stats = {"surrogate_before": stats["surrogate"], **search, "cg_residual": cg_residual,
                 "step_size": search["step_fraction"] * float(xp.linalg.norm(full_step)),
                 "expected_improvement": float(g @ full_step), "grad_norm": float(xp.linalg.norm(g)),
                 "entropy": entropy}
    if value_model is not None:
        stats.update(fit_values(value_model, value_optimizer, rollout, returns, config.value_epochs))
    stats.update(rollout_stats(rollout))
    return stats


def fit_values(value_model, value_optimizer, rollout: Rollout, returns, epochs: int) -> dict:
    """`epochs` full-batch steps on ``L_V = ½·mean_m[(V(s_t) − R_t)²]`` (the GAE returns R_t as targets)."""
    stats = {"explained_variance": explained_variance(rollout.values, returns, rollout.response_mask)}
    losses = []
    for _ in range(epochs):
        values = state_values(value_model, rollout.tokens, rollout.attention_mask)  # (B, T)
        v_loss = 0.5 * masked_mean((values - returns) ** 2, rollout.response_mask)
        value_optimizer.zero_grad()
        v_loss.backward()
        value_optimizer.step()
        losses.append(v_loss.item())
    if losses:  # before the first step and before the last
        stats.update(value_loss=losses[0], value_loss_last=losses[-1])
    return stats
