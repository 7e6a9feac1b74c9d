"""An action-grounded linear read-out of frozen tokens: where the agent is, learnt from actions alone.

On random-exploration episodes the displacement that an agent's own actions cause is their sum
(wherever nothing blocks it). A linear map W of the flattened frame tokens fitted so that

    (z_{t+g} - z_t) W  ~  a_t + ... + a_{t+g-1}        for gaps g in `gaps`

reads out the agent's position in action units, up to a constant, from any frame (a goal image
included) without a single position label: only the (frames, actions) pairs that V-JEPA 2-AC
trains on. It serves twice (world_model/objective.py): as a planning energy (`energy='readout'`:
the Euclidean distance between the read-outs of the imagined frame and the goal image, smooth in
the agent's position where the L1 token distance is flat beyond the agent's own tokens) and as an
auxiliary term of the predictor's loss (`loss.readout_weight`: the predictor's error measured
along W, the directions the planner reads).

    W = fit(tokens, action_sums, gaps=(1, 2, 4, 8), ridge=1e-3)   # (P * D, A) float32
    where = project(z, W)                                        # z (..., P, D) -> (..., A)

A ridge of `ridge` times the mean eigenvalue of the normal matrix keeps W off the token
directions that never vary; blocked moves (walls) bias the fit a little and are not removed.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np


def fit(tokens: np.ndarray, action_sums: np.ndarray, gaps: Sequence[int] = (1, 2, 4, 8),
        ridge: float = 1e-3) -> np.ndarray:
    """tokens (E, L, P, D) of E episodes of L frames, action_sums (E, L, A) cumulative actions
    (row 0 zeros: frame t follows the first t actions) -> W (P * D, A) float32."""
    e, length = tokens.shape[:2]
    flat = np.asarray(tokens, np.float64).reshape(e, length, -1)
    sums = np.asarray(action_sums, np.float64)
    gaps = [g for g in gaps if 0 < g < length]
    if not gaps:
        raise ValueError(f'readout gaps: none lies in [1, {length - 1}] for episodes of {length} frames')
    f = flat.shape[-1]
    gram, cross = np.zeros((f, f)), np.zeros((f, sums.shape[-1]))
    for g in gaps:
        dz = (flat[:, g:] - flat[:, :-g]).reshape(-1, f)
        gram += dz.T @ dz
        cross += dz.T @ (sums[:, g:] - sums[:, :-g]).reshape(-1, sums.shape[-1])
    scale = ridge * np.trace(gram) / f
    return np.linalg.solve(gram + scale * np.eye(f), cross).astype(np.float32)


def project(z, w):
    """z (..., P, D) tokens, w (P * D, A) -> (..., A) read-outs (jnp or np alike)."""
    return z.reshape(*z.shape[:-2], -1) @ w


def distance(z_pred: jnp.ndarray, z_goal: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Euclidean distance of read-outs: z_pred (S, P, D), z_goal (P, D) or (S, P, D) -> (S,)."""
    return jnp.linalg.norm(project(z_pred - z_goal, w), axis=-1)
