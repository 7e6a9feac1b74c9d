"""The V-JEPA 2-AC action-conditioned predictor (Flax NNX). Needs vit.py beside it.

Per time step t the sequence holds [action_t, state_t, (extrinsics_t), frame_t tokens (H'W')],
flattened over t. Attention is block-causal in time: every token of step t sees all tokens of
steps <= t. Frame tokens get the 3-D RoPE of the encoder at (t, h, w); the conditioning tokens
are rotated on the temporal part only (position t). Here that is RoPE at (t, 0, 0): a zero
angle is the identity, so the spatial parts pass through exactly as in the original.
Outputs are the frame tokens only, projected back to the encoder width: the prediction at
step t is read as the next step's representation.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vjepa_jax.models.vit import _layer_norm, _linear, make_blocks, run_blocks


def step_layout(num_steps: int, frame_tokens: int, cond_tokens: int, grid: Sequence[int]):
    """Static per-token step index (S,) and RoPE coords (S, 3) for S = num_steps * (cond_tokens +
    frame_tokens). The attention builds the block-causal mask from the step indices."""
    per_step = cond_tokens + frame_tokens
    step = np.repeat(np.arange(num_steps), per_step)
    within = np.tile(np.arange(per_step), num_steps) - cond_tokens  # < 0 for conditioning tokens
    frame = np.maximum(within, 0)
    coords = np.stack([step, np.where(within < 0, 0, frame // grid[1]), np.where(within < 0, 0, frame % grid[1])], -1)
    return step.astype(np.int32), coords.astype(np.int32)


def state_features(states, fourier: int):
    """(..., A) -> (..., A (1 + 2 fourier)): the states, then sin and cos of pi 2^k states, k < fourier."""
    if not fourier:
        return states
    angles = (states[..., None] * (np.pi * 2.0 ** np.arange(fourier))).reshape(*states.shape[:-1], -1)
    return jnp.concatenate([states, jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ACPredictor(nnx.Module):
    """grid: the encoder's spatial token grid (H', W') per step (16 x 16 at 256 px).
    action_dim: actions and states (7: xyz, euler xyz, gripper); extrinsics have action_dim - 1.
    action_scale, state_scale: actions and states enter multiplied by them (units of order 1).
    state_fourier: F > 0 adds sin / cos of pi 2^k x (k < F) of every scaled state dimension x to
    the state encoder's input (A (1 + 2F) features; 0, the original: the state alone), so that
    a small predictor can learn sharp functions of the state, such as where a wall stops a move."""

    def __init__(self, *, grid: Sequence[int] = (16, 16), embed_dim=1408, predictor_embed_dim=1024, depth=24,
                 num_heads=16, mlp_ratio=4.0, action_dim=7, use_extrinsics=False, frame_causal=True,
                 rope_form='tiled', scan_layers=False, remat_policy='none', attention_query_chunk=0, attention_impl='auto', dtype=None,
                 param_dtype=jnp.float32, action_scale: float = 1.0, state_scale: float = 1.0, state_fourier: int = 0,
                 rngs: nnx.Rngs):
        self.grid = tuple(grid)
        self.action_scale, self.state_scale = action_scale, state_scale  # inputs times these (1.0: the original)
        self.state_fourier = state_fourier
        self.use_extrinsics, self.frame_causal = use_extrinsics, frame_causal
        self.scan_layers, self.remat_policy = scan_layers, remat_policy
        self.predictor_embed = _linear(embed_dim, predictor_embed_dim, dtype, param_dtype, rngs)
        self.action_encoder = _linear(action_dim, predictor_embed_dim, dtype, param_dtype, rngs)
        self.state_encoder = _linear(action_dim * (1 + 2 * state_fourier), predictor_embed_dim, dtype, param_dtype,
                                     rngs)
        # always created (the released files hold it), used only with use_extrinsics
        self.extrinsics_encoder = _linear(action_dim - 1, predictor_embed_dim, dtype, param_dtype, rngs)
        self.predictor_blocks = make_blocks(depth, predictor_embed_dim, num_heads, mlp_ratio, scan=scan_layers,
                                            rescale_init=True, rope_form=rope_form, query_chunk=attention_query_chunk,
                                            attention_impl=attention_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.predictor_norm = _layer_norm(predictor_embed_dim, dtype, param_dtype, rngs)
        self.predictor_proj = _linear(predictor_embed_dim, embed_dim, dtype, param_dtype, rngs)

    @property
    def cond_tokens(self) -> int:
        return 3 if self.use_extrinsics else 2

    def __call__(self, tokens, actions, states, extrinsics=None):
        """tokens (B, T * H'W', D) encoder tokens of T steps; actions, states (B, T, A);
        extrinsics (B, T, A - 1) when use_extrinsics -> predictions (B, T * H'W', D)."""
        frame_tokens = self.grid[0] * self.grid[1]
        b, n, _ = tokens.shape
        if n % frame_tokens:
            raise ValueError(f'{n} tokens are not whole steps of {self.grid[0]}x{self.grid[1]} tokens')
        steps = n // frame_tokens
        x = self.predictor_embed(tokens).reshape(b, steps, frame_tokens, -1)
        cond = [self.action_encoder(actions * self.action_scale),
                self.state_encoder(state_features(states * self.state_scale, self.state_fourier))]
        if self.use_extrinsics:
            if extrinsics is None:
                raise ValueError('this predictor was built with use_extrinsics=True: pass extrinsics (B, T, A - 1)')
            cond.append(self.extrinsics_encoder(extrinsics))
        x = jnp.concatenate([c[:, :, None].astype(x.dtype) for c in cond] + [x], axis=2)
        x = x.reshape(b, steps * (self.cond_tokens + frame_tokens), -1)
        step, coords = step_layout(steps, frame_tokens, self.cond_tokens, self.grid)
        x = run_blocks(self.predictor_blocks, x, jnp.broadcast_to(jnp.asarray(coords), (b, *coords.shape)),
                       scan=self.scan_layers, remat_policy=self.remat_policy,
                       steps=jnp.asarray(step) if self.frame_causal else None)
        x = x.reshape(b, steps, self.cond_tokens + frame_tokens, -1)[:, :, self.cond_tokens:]
        return self.predictor_proj(self.predictor_norm(x.reshape(b, steps * frame_tokens, -1)))


def ac_predictor_from_spec(spec: dict, rngs: nnx.Rngs, **kwargs) -> ACPredictor:
    """Build from a JSON-able spec (the keys of ACPredictor's constructor)."""
    return ACPredictor(**{k: tuple(v) if k == 'grid' else v for k, v in spec.items()}, rngs=rngs, **kwargs)
