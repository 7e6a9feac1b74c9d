"""The V-JEPA objective as pure functions over NNX modules (use them inside jit).

  h   = layer_norm(target_encoder(clip))                      no gradient
  z_m = predictor(encoder(clip, ctx_m), ctx_m, tgt_m, m)      for each mask generator m
  loss = mean_m mean |z_m - h[tgt_m]|^p / p                   (p = loss_exp = 1)
       + var_weight * var(c_m) + cov_weight * cov(c_m)        optional, off in V-JEPA (0, 0)
  target <- momentum * target + (1 - momentum) * encoder      after the optimiser step

var / cov (variance_covariance) are VICReg's (Bardes et al. 2022) terms on the layer-normed
context tokens c_m = encoder(clip, ctx_m): an anti-collapse option beyond the original.

effective_rank(h) watches for dimensional collapse of the targets (logged as rank_target).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def gather_tokens(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x (B, N, D), idx (B, K) -> (B, K, D)."""
    return jnp.take_along_axis(x, idx[..., None], axis=1)


def target_features(target_encoder, clips: jax.Array) -> jax.Array:
    """Layer-normed (no affine, eps 1e-5) target-encoder tokens (B, N, D), float32, no grad."""
    return layer_norm(jax.lax.stop_gradient(target_encoder(clips)).astype(jnp.float32))


def layer_norm(x: jax.Array) -> jax.Array:
    """Over the last axis, no affine, eps 1e-5 (the original's F.layer_norm of the targets)."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5)


def token_covariance(x: jax.Array) -> jax.Array:
    """x (..., D) -> (D, D) covariance over all its tokens, float32."""
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    x = x - x.mean(0)
    return x.T @ x / (x.shape[0] - 1)


def predict(encoder, predictor, clips: jax.Array, masks: Sequence, with_context: bool = False) -> list:
    """[(B, Kt, D) predictions per generator] (with_context: [(prediction, context tokens
    (B, Kc, D))]). The patch embedding is computed once and gathered per mask (the same
    numbers as the original's embed-per-mask)."""
    tokens, grid = encoder.embed(clips)
    out = []
    for m, (ctx, tgt) in enumerate(masks):
        c = encoder.encode(gather_tokens(tokens, ctx), ctx, grid)
        z = predictor(c, ctx, tgt, m).astype(jnp.float32)
        out.append((z, c) if with_context else z)
    return out


def variance_covariance(x: jax.Array) -> jax.Array:
    """VICReg's anti-collapse terms over the tokens of x (..., D), each layer-normed (no affine)
    first -> (2,): [mean_d relu(1 - std_d), sum_{d != e} cov_de^2 / D]. Both are 0 for
    whitened tokens; a collapsed direction raises the first, a redundant pair the second."""
    cov = token_covariance(layer_norm(x.astype(jnp.float32)))
    std = jnp.sqrt(jnp.diagonal(cov) + 1e-4)
    off = cov - jnp.diag(jnp.diagonal(cov))
    return jnp.stack([jnp.mean(jax.nn.relu(1.0 - std)), jnp.sum(off ** 2) / cov.shape[0]])


def jepa_loss(encoder, predictor, h: jax.Array, clips: jax.Array, masks: Sequence, loss_exp: float = 1.0,
              var_weight: float = 0.0, cov_weight: float = 0.0):
    """-> (loss, per-generator prediction losses (M,)); loss adds var_weight * var + cov_weight
    * cov of each generator's context tokens (variance_covariance) when a weight is > 0.
    h from target_features."""
    outs = predict(encoder, predictor, clips, masks, with_context=True)
    per_mask = jnp.stack([jnp.mean(jnp.abs(z - gather_tokens(h, tgt)) ** loss_exp) / loss_exp
                          for (z, _), (_, tgt) in zip(outs, masks)])
    loss = per_mask.mean()
    if var_weight or cov_weight:
        reg = jnp.stack([variance_covariance(c) for _, c in outs]).mean(0)
        loss = loss + var_weight * reg[0] + cov_weight * reg[1]
    return loss, per_mask


def ema_update(target, online, momentum):
    """k <- m k + (1 - m) q, leaf by leaf (pytrees of the same structure)."""
    return jax.tree.map(lambda k, q: momentum * k + (1.0 - momentum) * q, target, online)


def effective_rank(h: jax.Array) -> jax.Array:
    """RankMe (Garrido et al. 2023): exp(entropy) of the L1-normalised singular values of the
    centred tokens. h (..., D) -> scalar in [1, D]; D when every direction carries equal
    variance, near 1 when the features have collapsed to one direction."""
    cov = token_covariance(h)  # eigenvalues: squared singular values of the centred tokens / (n - 1)
    s = jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(cov), 0.0))
    p = s / (s.sum() + 1e-12) + 1e-7
    return jnp.exp(-jnp.sum(p * jnp.log(p)))
