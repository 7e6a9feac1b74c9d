"""Closed-loop model-predictive control on gymnasium environments, batched over episodes.

Every model step the policy sees the current frames, plans `horizon` model actions, and the
first one is executed as `frame_step` environment steps of action / frame_step each (a model
action is the SUM of the env actions over one stride, as the training windows sum them); then
the agent observes, re-encodes and re-plans. An episode ends when the environment terminates
(success) or after `model_steps` model steps; its result is the distance at that moment.

    plan = latent_policy(encoder, predictor, PlanConfig(...), low, high)   # the world model
    result = run_episodes(make_env, seeds, plan, cfg)   # {'success' %, 'final_distance', 'seconds_per_action', ...}

Policies map (frames (E, H, W, 3) uint8, states (E, A), goal (E, P, D) tokens or goal images,
key) -> actions (E, horizon, A). latent_policy: CEM or the gradient planner on the energy of
the imagined final frame (objective.energy) from the AC predictor's rollout; the future
proprioceptive states are integrated from the actions (state + cumulative action sum; V-JEPA 2-AC)
or, with imagined_states='readout', read off each imagined frame (state + the action read-out's
move from the current frame), so that a move the predictor imagines blocked stays blocked.
random_policy: uniform actions. oracle_policy: CEM on the TRUE simulator (deep copies of
the environment), the ceiling.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vjepa_jax.world_model import objective, planners


IMAGINED_STATES = ('integrated', 'readout')


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    planner: str = 'cem'                 # 'cem' | 'gradient'
    horizon: int = 2                     # model steps per plan
    frame_step: int = 5                  # env steps per model step
    model_steps: int = 20                # the episode's budget, in model steps
    replan_every: int = 0                # env steps executed per plan (0: frame_step, one model action)
    energy: str = 'l1'                   # objective.energy kind ('readout': latent_policy's readout)
    energy_steps: str = 'final'          # 'final': the last imagined frame (V-JEPA 2-AC) | 'all': mean over the horizon
    warm_start: bool = False             # CEM starts from the previous plan, shifted by the model action run
    proprio_dims: int = 2                # the state's first dims fed to the predictor
    imagined_states: str = 'integrated'  # the rollout's later states: 'integrated' from the actions (V-JEPA 2-AC)
                                         # | 'readout': state + the read-out's move from the current frame
    ensemble_spread: float = 0.0         # several predictors: energy = their mean + this x their std
    cem: planners.CEMConfig = planners.CEMConfig()
    gradient: planners.GradientConfig = planners.GradientConfig()


def execute_steps(cfg: PlanConfig) -> int:
    """Env steps executed per plan: cfg.replan_every, or one model action (frame_step)."""
    if not 0 <= cfg.replan_every <= cfg.frame_step:
        raise ValueError(f'replan_every={cfg.replan_every}: must lie in [0, frame_step={cfg.frame_step}] (0: one '
                         f'model action)')
    return cfg.replan_every or cfg.frame_step


def model_bounds(env, frame_step: int) -> tuple:
    """A model action sums frame_step env actions: bounds scale by frame_step."""
    return env.action_space.low * frame_step, env.action_space.high * frame_step


def latent_policy(encoder, predictor, cfg: PlanConfig, low, high, readout=None) -> Callable:
    """-> policy(frames (E, H, W, 3) uint8, states (E, S), goal_tokens (E, P, D), key) -> (E, horizon, A).
    readout (P * D, A): the action read-out that cfg.energy='readout' measures in (world_model/readout.py).
    predictor: one AC predictor, or a list of M of the same layout (an ensemble: each imagines the
    plan, and the energy is the members' mean + cfg.ensemble_spread x their std, so that a plan
    whose outcome the members disagree on, a model error to exploit, costs more)."""
    enc_def, enc_state = nnx.split(encoder)
    members = list(predictor) if isinstance(predictor, (list, tuple)) else [predictor]
    pred_def, states = nnx.graphdef(members[0]), [nnx.state(m) for m in members]
    ensemble = len(members) > 1
    pred_state = jax.tree.map(lambda *x: jnp.stack(x), *states) if ensemble else states[0]  # (M, ...) leaves
    grid = encoder.grid[-2:]
    a_dim = len(np.atleast_1d(low))
    readout = None if readout is None else jnp.asarray(readout)  # objective.energy says when one is missing
    if cfg.imagined_states not in IMAGINED_STATES:
        raise ValueError(f'imagined_states={cfg.imagined_states!r}: choose one of {list(IMAGINED_STATES)}')
    if cfg.imagined_states == 'readout' and readout is None:
        raise ValueError("imagined_states='readout' reads the states off the imagined frames: pass the action "
                         "read-out (the AC workdir's readout.npy, world_model/readout.py)")

    def energy(z, z_goal):
        return objective.energy(z, z_goal, cfg.energy, grid, readout)

    @jax.jit
    def plan(enc_state, pred_state, frames, states, goal_tokens, keys, inits):
        z_now = objective.encode_frames(nnx.merge(enc_def, enc_state), frames[:, None])[:, 0]

        def one(z0, state, z_goal, key, init):
            def member_energy(member_state, actions):  # one predictor: (S, H, A) -> (S,)
                s = actions.shape[0]
                proprio = objective.integrate_states(jnp.broadcast_to(state, (s, state.shape[-1])), actions)
                read_state = objective.state_reader(state, z0, readout) if cfg.imagined_states == 'readout' else None
                z = objective.rollout(nnx.merge(pred_def, member_state), jnp.broadcast_to(z0, (s, *z0.shape)),
                                      actions, proprio, read_state)
                if cfg.energy_steps == 'final':
                    return energy(z[:, -1], z_goal)
                per_step = jax.vmap(lambda zk: energy(zk, z_goal), in_axes=1)(z)
                return per_step.mean(0)

            def energy_fn(actions):  # (S, H, A) -> (S,)
                if not ensemble:
                    return member_energy(pred_state, actions)
                each = jax.vmap(member_energy, in_axes=(0, None))(pred_state, actions)  # (M, S)
                return each.mean(0) + cfg.ensemble_spread * each.std(0)
            if cfg.planner == 'cem':
                best, _ = planners.cem(energy_fn, key, dataclasses.replace(cfg.cem, horizon=cfg.horizon,
                                                                           action_dim=a_dim), low, high, init)
            else:
                best, _ = planners.gradient_plan(energy_fn, key, dataclasses.replace(
                    cfg.gradient, horizon=cfg.horizon, action_dim=a_dim), low, high)
            return best
        return jax.vmap(one)(z_now, states[:, :cfg.proprio_dims], goal_tokens, keys, inits)

    return _warm(cfg, low, lambda frames, states, goal, key, inits: plan(
        enc_state, pred_state, frames, states, goal, jax.random.split(key, len(frames)), inits))


def _warm(cfg: PlanConfig, low, plan: Callable) -> Callable:
    """policy(frames, states, goal, key) around plan(..., inits (E, H, A)): with cfg.warm_start
    each call starts from the previous call's plans shifted by one step (the last step repeated),
    or unshifted when cfg.replan_every runs only part of the first model action."""
    previous = {}
    shift = execute_steps(cfg) == cfg.frame_step

    def policy(frames, states, goal, key):
        e, shape = len(frames), (cfg.horizon, len(np.atleast_1d(low)))
        inits = previous.get('plans')
        if not cfg.warm_start or inits is None or len(inits) != e:
            inits = jnp.full((e, *shape), jnp.nan)  # nan: start from the middle of the bounds
        actions = plan(frames, states, goal, key, inits)
        previous['plans'] = jnp.concatenate([actions[:, 1:], actions[:, -1:]], axis=1) if shift else actions
        return actions
    return policy


@nnx.jit
def _encode_images(encoder, images):
    return objective.encode_frames(encoder, images[:, None])[:, 0]


def goal_tokens(encoder, goal_images: np.ndarray) -> jax.Array:
    """(E, H, W, 3) uint8 goal images -> (E, P, D) layer-normed tokens (compiled once per shape)."""
    return _encode_images(encoder, jnp.asarray(goal_images))


def random_policy(cfg: PlanConfig, low, high) -> Callable:
    def policy(frames, states, goal, key):
        shape = (len(frames), cfg.horizon, len(np.atleast_1d(low)))
        return jax.random.uniform(key, shape, minval=jnp.asarray(low), maxval=jnp.asarray(high))
    return policy


def can_simulate(env) -> bool:
    """Whether oracle_policy can plan on env: a batched `simulate`, or deep copies."""
    if hasattr(env, 'simulate'):
        return True
    try:
        copy.deepcopy(env)
        return True
    except TypeError:
        return False


def true_distances(env, actions, cfg: PlanConfig) -> np.ndarray:
    """(S,) float32 true distances to the goal after model actions (S, H, A) from env's current
    state (env unchanged): at the last step, or the mean over the H steps (cfg.energy_steps).
    The environment's batched `simulate` when it has one, else deep copies stepped one by one."""
    steps = np.repeat(np.asarray(actions, np.float64), cfg.frame_step, axis=1) / cfg.frame_step
    horizon = actions.shape[1]
    ends = range(1, horizon + 1) if cfg.energy_steps == 'all' else [horizon]
    if hasattr(env, 'simulate'):
        return np.mean([env.simulate(steps[:, :k * cfg.frame_step]) for k in ends], 0).astype(np.float32)
    dist = np.zeros(len(steps), np.float32)
    for i, seq in enumerate(steps):
        sim, at = copy.deepcopy(env), {}
        for j, a in enumerate(seq):
            at[j + 1] = sim.step(a)[-1]['distance']
        dist[i] = np.mean([at[k * cfg.frame_step] for k in ends])
    return dist


def oracle_policy(envs: list, cfg: PlanConfig, low, high) -> Callable:
    """CEM (cfg.cem) whose energy is the true distance after the candidate actions, from the
    environment's own batched `simulate(actions (S, K, A)) -> (S,)` when it has one, else from
    deep copies stepped one by one: the ceiling for a perfect world model."""
    a_dim = len(np.atleast_1d(low))
    cem_cfg = dataclasses.replace(cfg.cem, horizon=cfg.horizon, action_dim=a_dim)

    @jax.jit
    def plan_one(key, init, index):  # compiled once; the callback picks the episode's environment
        def energy_fn(actions):
            return jax.pure_callback(lambda a, i: true_distances(envs[int(i)], a, cfg),
                                     jax.ShapeDtypeStruct(actions.shape[:1], jnp.float32), actions, index)
        return planners.cem(energy_fn, key, cem_cfg, low, high, init)[0]

    def plan(frames, states, goal, key, inits):
        keys = jax.random.split(key, len(envs))
        return jnp.stack([plan_one(keys[i], inits[i], i) for i in range(len(envs))])
    return _warm(cfg, low, plan)


def run_episodes(envs: Sequence, seeds: Sequence[int], policy: Callable, cfg: PlanConfig, key: jax.Array,
                 goal_fn: Callable | None = None, record: int = 0) -> dict:
    """Closed loop on len(envs) episodes at once (env i reset with seeds[i]). goal_fn(goal_images)
    -> what the policy takes as goal (default: the images). record: keep the frames of the first
    `record` episodes. -> {'success' (%), 'final_distance' (mean), 'seconds_per_action' (planning
    wall time per model action of one episode; with cfg.replan_every < frame_step, of the several
    plans made while one model action's env steps run), 'distances', 'successes', 'frames', 'actions'}."""
    obs, infos = zip(*[env.reset(seed=int(s)) for env, s in zip(envs, seeds)])
    goal_images = np.stack([i['goal_image'] for i in infos])
    goal = goal_fn(goal_images) if goal_fn else goal_images
    frames, states = np.stack(obs), np.stack([i['state'] for i in infos]).astype(np.float32)
    done = np.array([i['success'] for i in infos])
    distance = np.array([i['distance'] for i in infos])
    recorded = [[f.copy()] for f in frames[:record]]  # (frames' rows are overwritten as the episodes run)
    executed = [[] for _ in envs]
    plan_time, plan_actions = 0.0, 0
    policy(jnp.asarray(frames), jnp.asarray(states), goal, key)  # compile outside the timing
    execute = execute_steps(cfg)
    for t in range(-(-cfg.model_steps * cfg.frame_step // execute)):  # the same env-step budget
        if done.all():
            break
        t0 = time.time()
        actions = np.asarray(policy(jnp.asarray(frames), jnp.asarray(states), goal, jax.random.fold_in(key, t)))
        plan_time += time.time() - t0
        plan_actions += int((~done).sum()) * execute / cfg.frame_step  # in model actions executed
        for i, env in enumerate(envs):
            if done[i]:
                continue
            executed[i].append(actions[i, 0])
            for _ in range(execute):
                obs, _, terminated, _, info = env.step(actions[i, 0] / cfg.frame_step)
                distance[i] = info['distance']
                if terminated:
                    done[i] = True
                    break
            frames[i], states[i] = obs, info['state']
            if i < record:
                recorded[i].append(frames[i].copy())
    return {'success': 100.0 * float(done.mean()), 'final_distance': float(distance.mean()),
            'seconds_per_action': plan_time / max(plan_actions, 1), 'distances': distance.tolist(),
            'successes': done.tolist(), 'frames': [np.stack(r) for r in recorded], 'goal_images': goal_images,
            'actions': [np.asarray(a) for a in executed]}
