"""Random-exploration episodes from a gymnasium environment, for training a world model.

    python -m vjepa_jax.world_model.collect --env=two_rooms --episodes=200 --steps=32 --workdir=DIR

Writes DIR/episodes/NNNNN.npz, one per episode: frames (T+1, H, W, 3) uint8 (the reset frame,
then one per step), actions (T, A) float32, states (T+1, S) float32 (the environment's own
state: positions), goal_image (H, W, 3). Actions are a smoothed random walk (each step keeps
`smoothing` of the previous action and adds uniform noise, clipped to the action bounds), so
that the agent travels instead of jittering in place. With `attraction` a in (0, 1] the noise is
(1 - a) uniform + a at full speed along the environment's `exploration_direction()` (push: toward
the block, so that contacts, rare in a pure random walk, fill the data; two_rooms: through the door). Deterministic from --seed: episode i
resets with seed + i and draws its actions from its own generator.
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from vjepa_jax import config as config_lib

ENVS = ('two_rooms', 'push', 'pusht')
FLAGS = flags.FLAGS


def make_env(name: str):
    if name == 'two_rooms':
        from vjepa_jax.worlds.two_rooms import TwoRooms
        return TwoRooms()
    if name == 'push':
        from vjepa_jax.worlds.push import Push
        return Push()
    if name == 'pusht':  # gym-pusht through the adapter (worlds/gym_adapter.py)
        from vjepa_jax.worlds.gym_adapter import make_pusht
        return make_pusht()
    raise config_lib.UsageError(f'--env={name}: choose one of {list(ENVS)}')


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 1e-9 else np.zeros_like(v)


def episode(env, seed: int, steps: int, smoothing: float = 0.8, attraction: float = 0.0) -> dict:
    """One random-exploration episode (a truncation or success does not end it early)."""
    rng = np.random.default_rng(seed)
    direction = getattr(env.unwrapped, 'exploration_direction', None)
    if attraction and direction is None:
        raise config_lib.UsageError(f'attraction={attraction}: {type(env.unwrapped).__name__} has no '
                                    f'exploration_direction(); pass attraction=0')
    obs, info = env.reset(seed=seed)
    goal_image = info.get('goal_image', obs)  # the task's, given at reset
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    frames, states, actions = [obs], [info['state']], []
    action = np.zeros_like(low)
    for _ in range(steps):
        noise = rng.uniform(low, high)
        if attraction:
            noise = (1 - attraction) * noise + attraction * _unit(direction()) * high
        action = np.clip(smoothing * action + (1 - smoothing) * noise * 3, low, high)
        action = action.astype(np.float32).astype(np.float64)  # what is stored is what was executed
        obs, _, _, _, info = env.step(action)
        frames.append(obs)
        states.append(info['state'])
        actions.append(action)
    return {'frames': np.stack(frames), 'actions': np.asarray(actions, np.float32),
            'states': np.asarray(states, np.float32), 'goal_image': goal_image}


def collect(env_name: str, workdir: str, episodes: int, steps: int, seed: int = 0, log=print,
            attraction: float = 0.0) -> str:
    """Write the episodes (skipping those already written); -> the episodes folder."""
    folder = os.path.join(workdir, 'episodes')
    os.makedirs(folder, exist_ok=True)
    env, t0, shown = make_env(env_name), time.time(), 0.0
    for i in range(episodes):
        path = os.path.join(folder, f'{i:05d}.npz')
        if not os.path.exists(path):
            tmp = path + '.tmp.npz'
            np.savez_compressed(tmp, **episode(env, seed + i, steps, attraction=attraction))
            os.replace(tmp, path)  # never a half-written episode under its final name
        done, now = i + 1, time.time()
        if now - shown > 1.0 or done == episodes:  # a progress line at most once a second
            shown, rate = now, done / max(now - t0, 1e-9)
            log(f'\r{done}/{episodes} episodes | {rate:.1f}/s | ETA {(episodes - done) / rate:.0f}s', end='')
    log('')
    return folder


def main(argv):
    if not FLAGS.workdir:
        raise config_lib.UsageError('pass --workdir=DIR (episodes go to DIR/episodes)')
    folder = collect(FLAGS.env, FLAGS.workdir, FLAGS.episodes, FLAGS.steps, FLAGS.seed,
                     log=lambda *a, **k: print(*a, **k, flush=True), attraction=FLAGS.attraction)
    print(f'{FLAGS.episodes} episodes of {FLAGS.steps} steps in {folder}')
    return 0


if __name__ == '__main__':
    config_lib.define_workdir_flag(help_string='episodes go to WORKDIR/episodes')
    flags.DEFINE_enum('env', 'two_rooms', list(ENVS), 'the environment')
    flags.DEFINE_integer('episodes', 200, 'how many episodes', lower_bound=1)
    flags.DEFINE_integer('steps', 32, 'actions per episode', lower_bound=1)
    flags.DEFINE_integer('seed', 0, 'episode i resets with seed + i', lower_bound=0)
    flags.DEFINE_float('attraction', 0.0, "share of the walk's noise drawn toward the env's exploration_direction "
                       '(push: the block)', lower_bound=0.0, upper_bound=1.0)
    config_lib.run(main)
