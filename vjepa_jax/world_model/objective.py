"""V-JEPA 2-AC's objective and planning energy: pure functions of (encoder, predictor, arrays).

Layout: a window of T frames gives tokens z (B, T, P, D) (P tokens per frame), actions
(B, T-1, A) (action t moves frame t to frame t+1) and proprioceptive states (B, T, A).

    z = encode_frames(encoder, frames)                      # (B, T, H, W, 3) uint8 -> (B, T, P, D)
    out = ac_losses(predictor, z, actions, states, auto_steps=2)   # {'loss', 'teacher_forcing', 'rollout'}
    z_final = rollout(predictor, z[:, 0], plan_actions, plan_states)[:, -1]
    e = energy(z_final, z_goal)                             # (B,)

Frames are encoded one at a time, each repeated to fill one tubelet, and the tokens are
layer-normed (no affine), as the original does. Teacher forcing predicts every next frame from
the true tokens of the frames before it; the rollout starts from the first frame and feeds back
its own layer-normed predictions for `auto_steps` steps, fed the recorded states, the states
integrated from the actions (`rollout_states='integrated'`: the planner's rule, which walls and
contacts do not stop; on DROID, where the action is the state difference, the two agree) or the
states read off its own imagined frames (`'readout'`, as the planner's imagined_states='readout').
The loss is the sum of the two means of |z_pred - z_true|^loss_exp / loss_exp; with a read-out
W (world_model/readout.py) and readout_weight > 0 it adds readout_weight x the mean |(z_pred -
z_true) W| over both (the error along the directions a read-out energy plans on; 0 is V-JEPA 2-AC).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vjepa_jax.data.transforms import MEAN, STD  # the pipeline's ImageNet normalisation (0-255 scale)
from vjepa_jax.jepa import layer_norm
from vjepa_jax.world_model import readout as readout_lib


def encode_frames(encoder, frames: jax.Array, tubelet_size: int = 2) -> jax.Array:
    """frames (B, T, H, W, 3) uint8 -> layer-normed tokens (B, T, P, D) float32, no gradient."""
    b, t = frames.shape[:2]
    x = (frames.astype(jnp.float32) - MEAN) / STD
    x = jnp.repeat(x.reshape(b * t, 1, *frames.shape[2:]), tubelet_size, axis=1)  # (B T, tubelet, H, W, 3)
    tokens = jax.lax.stop_gradient(encoder(x)).astype(jnp.float32)
    return layer_norm(tokens.reshape(b, t, -1, tokens.shape[-1]))


def predict_next(predictor, z: jax.Array, actions: jax.Array, states: jax.Array) -> jax.Array:
    """z (B, T, P, D), actions and states (B, T, A) -> layer-normed predictions (B, T, P, D) of
    the frames 1..T (block-causal: prediction t sees steps <= t only)."""
    b, t, p, d = z.shape
    out = predictor(z.reshape(b, t * p, d), actions, states)
    return layer_norm(out.astype(jnp.float32).reshape(b, t, p, d))


def rollout(predictor, z0: jax.Array, actions: jax.Array, states: jax.Array, read_state=None) -> jax.Array:
    """Imagine H steps from one frame: z0 (B, P, D), actions (B, H, A), states (B, H, A) (the state
    at each step the action is taken) -> predicted tokens (B, H, P, D) of frames 1..H, each step
    fed the earlier predictions. read_state: None, or a function of imagined tokens (B, P, D) ->
    states (B, A); then only states[:, 0] is used and each later state is read from the frame
    imagined before it."""
    z, s = z0[:, None], states[:, :1]
    for n in range(actions.shape[1]):
        fed = s if read_state is not None else states[:, :n + 1]
        nxt = predict_next(predictor, z, actions[:, :n + 1], fed)[:, -1:]
        z = jnp.concatenate([z, nxt], axis=1)
        if read_state is not None:
            s = jnp.concatenate([s, read_state(nxt[:, 0])[:, None]], axis=1)
    return z[:, 1:]


def state_reader(state0: jax.Array, z0: jax.Array, readout: jax.Array):
    """rollout's read_state: imagined tokens z_n (B, P, D) -> state0 (B, A) plus the read-out
    (P * D, A) move from the tokens z0 (B, P, D) to z_n."""
    return lambda z_n: state0 + readout_lib.project(z_n - z0, readout)


ROLLOUT_STATES = ('recorded', 'integrated', 'readout')


def integrate_states(state0: jax.Array, actions: jax.Array) -> jax.Array:
    """state0 (B, A), actions (B, H, A) -> (B, H, A): the state when each action is taken, as the
    planner imagines it (state0 plus the actions before it; nothing in the world stops them)."""
    return state0[:, None, :] + jnp.cumsum(actions, axis=1) - actions


def _l1(pred: jax.Array, target: jax.Array, loss_exp: float) -> jax.Array:
    return jnp.mean(jnp.abs(pred - target) ** loss_exp) / loss_exp


def ac_losses(predictor, z: jax.Array, actions: jax.Array, states: jax.Array, auto_steps: int = 2,
              loss_exp: float = 1.0, readout: jax.Array | None = None, readout_weight: float = 0.0,
              rollout_states: str = 'recorded') -> dict:
    """z (B, T, P, D) true tokens, actions (B, T-1, A), states (B, T, A) -> scalar losses
    {'teacher_forcing', 'rollout', 'loss' (their sum)} and, with readout (P * D, A) and
    readout_weight > 0, 'readout' (added to 'loss' times readout_weight). auto_steps in [1, T-1].
    rollout_states: the rollout's states are the 'recorded' ones, 'integrated' from the actions
    (integrate_states, as the planner feeds them), or 'readout': each later state read off the
    frame imagined before it (rollout's read_state: the recorded first state plus the read-out's
    move from the true first frame, no gradient through it; needs readout), as the planner's
    imagined_states='readout'."""
    steps = z.shape[1] - 1
    if not 1 <= auto_steps <= steps:
        raise ValueError(f'auto_steps={auto_steps}: must lie in [1, {steps}] for windows of {steps + 1} frames')
    if rollout_states not in ROLLOUT_STATES:
        raise ValueError(f'rollout_states={rollout_states!r}: choose one of {list(ROLLOUT_STATES)}')
    z_tf = predict_next(predictor, z[:, :-1], actions, states[:, :-1])
    # the rollout's first step IS teacher forcing's first prediction (both see only the true frame 0)
    z_ar = z_tf[:, :1]
    if auto_steps > 1:
        ar_states, read_state = states[:, :auto_steps], None
        if rollout_states == 'readout':
            if readout is None:
                raise ValueError("rollout_states='readout' reads the states off the imagined frames: pass readout")
            if readout.shape[-1] != states.shape[-1]:
                raise ValueError(f"rollout_states='readout' reads {readout.shape[-1]} state dims off the frames, the "
                                 f"states have {states.shape[-1]}: fit the read-out to as many dims as the states")
            # an input like the recorded state: no gradient flows back through it into the frame
            reader = state_reader(states[:, 0], z[:, 0], readout)
            read_state = lambda z_n: jax.lax.stop_gradient(reader(z_n))  # noqa: E731
        elif rollout_states == 'integrated':
            if states.shape[-1] != actions.shape[-1]:
                raise ValueError(f"rollout_states='integrated' adds actions to states: they have {actions.shape[-1]} "
                                 f"and {states.shape[-1]} dims; feed as many state dims as action dims")
            ar_states = integrate_states(states[:, 0], actions[:, :auto_steps])
        z_ar = rollout(predictor, z[:, 0], actions[:, :auto_steps], ar_states, read_state)
    teacher_forcing = _l1(z_tf, z[:, 1:], loss_exp)
    rollout_loss = _l1(z_ar, z[:, 1:auto_steps + 1], loss_exp)
    out = {'teacher_forcing': teacher_forcing, 'rollout': rollout_loss, 'loss': teacher_forcing + rollout_loss}
    if readout is not None and readout_weight > 0:
        along = lambda pred, true: jnp.mean(jnp.abs(readout_lib.project(pred - true, readout)))  # noqa: E731
        out['readout'] = along(z_tf, z[:, 1:]) + along(z_ar, z[:, 1:auto_steps + 1])
        out['loss'] = out['loss'] + readout_weight * out['readout']
    return out


def _halve(x: jax.Array, axis: int) -> jax.Array:
    """Average neighbouring pairs along axis (ceil(n / 2) out; an odd last element stays alone)."""
    n = x.shape[axis]
    if n == 1:
        return x
    odd = n % 2
    x = jnp.pad(x, [(0, odd if a == axis else 0) for a in range(x.ndim)])
    x = x.reshape(*x.shape[:axis], (n + odd) // 2, 2, *x.shape[axis + 1:]).sum(axis + 1)
    counts = np.full((n + odd) // 2, 2.0, np.float32)
    counts[-1] -= odd
    return x / counts.reshape(-1, *([1] * (x.ndim - axis - 1)))


ENERGIES = ('l1', 'l1_pyramid', 'readout')


def energy(z_pred: jax.Array, z_goal: jax.Array, kind: str = 'l1', grid: tuple = (),
           readout: jax.Array | None = None) -> jax.Array:
    """Distance between predicted final tokens z_pred (S, P, D) and the goal's z_goal (P, D) or
    (S, P, D) -> (S,). kind:
      'l1'          mean |z_pred - z_goal| (V-JEPA 2-AC's energy);
      'readout'     the Euclidean distance between the two frames' read-outs (readout (P * D, A),
                    world_model/readout.py: where the agent is, fitted to the episodes' actions);
      'l1_pyramid'  the mean of 'l1' over the token grid (h, w) = grid average-pooled by 1, 2, 4, ...
                    (to the whole frame): differences at nearby tokens cancel at coarse scales, so
                    the energy keeps falling as a small object nears its goal tokens."""
    if kind == 'l1':
        return jnp.mean(jnp.abs(z_pred - z_goal), axis=(-2, -1))
    if kind == 'readout':
        if readout is None:
            raise ValueError("energy 'readout' needs the read-out matrix (world_model/readout.py: the AC "
                             "workdir's readout.npy, written when loss.readout_weight > 0 or plan.energy='readout')")
        return readout_lib.distance(z_pred, z_goal, readout)
    if kind != 'l1_pyramid':
        raise ValueError(f'energy kind {kind!r}: choose one of {list(ENERGIES)}')
    h, w = grid
    diff = jnp.broadcast_to(z_pred - z_goal, z_pred.shape)
    diff = diff.reshape(*diff.shape[:-2], h, w, diff.shape[-1])
    levels = []
    while True:
        levels.append(jnp.mean(jnp.abs(diff), axis=(-3, -2, -1)))
        if diff.shape[-3] == 1 and diff.shape[-2] == 1:
            break
        diff = _halve(_halve(diff, diff.ndim - 3), diff.ndim - 2)
    return jnp.mean(jnp.stack(levels), axis=0)
