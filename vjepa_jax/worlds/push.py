"""Push: a round pusher and a square block on a table, NumPy only, deterministic from the reset
seed, rendered to RGB (the setting of PushT without the T).

The table is the unit square (y down, x right). The pusher, a disc of radius `pusher_radius`,
moves by the action (a 2-D velocity in [-max_speed, max_speed]^2 per step) in `substeps`
pieces; when it overlaps the block (an axis-aligned square of half-side `block_half`, no
rotation) the block is pushed out of it along the contact normal, and a block that would leave
the table stops there (and so does the pusher). A task (reset) draws the block's start, its goal
`goal_distance` away, and where the pusher stands in the goal image; the goal is given as that
image (`info['goal_image']`). Success: the block's centre within `success_distance` of its goal
(terminated); episodes are truncated after `max_steps`.

    env = Push()
    obs, info = env.reset(seed=0)      # obs (64, 64, 3) uint8; info: state (pusher, block), goal, goal_image
    obs, reward, terminated, truncated, info = env.step(np.array([0.05, 0.0]))
"""
from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

BACKGROUND = np.array([235, 235, 225], np.uint8)
BLOCK = np.array([40, 80, 220], np.uint8)
PUSHER = np.array([220, 40, 40], np.uint8)


@dataclasses.dataclass(frozen=True)
class PushConfig:
    size: int = 64                      # rendered frame: size x size RGB
    max_speed: float = 0.06             # per step and axis (the action bound), world units
    pusher_radius: float = 0.04
    block_half: float = 0.07
    goal_distance: tuple = (0.1, 0.25)  # how far the goal is from the block's start
    substeps: int = 8
    success_distance: float = 0.05
    max_steps: int = 100


class Push(gym.Env):
    """gymnasium.Env: observations are RGB frames; actions bounded 2-D pusher velocities.
    State: (pusher y, x, block y, x)."""
    metadata = {'render_modes': ['rgb_array'], 'render_fps': 10}

    def __init__(self, config: PushConfig = PushConfig(), render_mode: str | None = 'rgb_array'):
        self.config = c = config
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (c.size, c.size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-c.max_speed, c.max_speed, (2,), np.float32)
        self.pusher, self.block = np.full(2, 0.2), np.full(2, 0.5)
        self.goal, self.goal_pusher = np.full(2, 0.7), np.full(2, 0.2)
        self.steps = 0
        centres = (np.arange(c.size) + 0.5) / c.size  # pixel centres in world units, once
        self._yy, self._xx = np.meshgrid(centres, centres, indexing='ij')

    # -- physics ----------------------------------------------------------------------------
    def contact(self, pusher: np.ndarray, block: np.ndarray) -> np.ndarray:
        """The block's displacement (..., 2) that ends an overlap with the pusher (zeros if none);
        batched over leading axes."""
        c = self.config
        pusher, block = np.asarray(pusher, np.float64), np.asarray(block, np.float64)
        closest = np.clip(pusher, block - c.block_half, block + c.block_half)
        offset = pusher - closest
        dist = np.linalg.norm(offset, axis=-1)
        # the pusher's centre inside the block: push along the shallower axis
        gap = c.block_half - np.abs(pusher - block)
        axis = np.argmin(gap, axis=-1)
        side = np.sign(np.take_along_axis(pusher - block, axis[..., None], -1)[..., 0])
        inside_normal = np.where(np.arange(2) == axis[..., None], np.where(side == 0, 1.0, side)[..., None], 0.0)
        inside = dist <= 1e-9
        normal = np.where(inside[..., None], inside_normal, offset / np.maximum(dist, 1e-12)[..., None])
        depth = np.where(inside, -np.take_along_axis(gap, axis[..., None], -1)[..., 0], dist)
        overlap = dist < c.pusher_radius - 1e-9  # touching (to rounding) is not overlapping
        return np.where(overlap[..., None], -normal * (c.pusher_radius - depth)[..., None], 0.0)

    def move(self, pusher: np.ndarray, block: np.ndarray, action: np.ndarray) -> tuple:
        """(pusher, block) (..., 2) after one step of (clipped) actions (..., 2), batched."""
        c = self.config
        pusher, block = np.asarray(pusher, np.float64), np.asarray(block, np.float64)
        step = np.clip(np.asarray(action, np.float64), -c.max_speed, c.max_speed) / c.substeps
        lo_p, hi_p = c.pusher_radius, 1 - c.pusher_radius
        lo_b, hi_b = c.block_half, 1 - c.block_half
        for _ in range(c.substeps):
            new_pusher = np.clip(pusher + step, lo_p, hi_p)
            new_block = block + self.contact(new_pusher, block)
            ok = (np.all(new_block >= lo_b, axis=-1) & np.all(new_block <= hi_b, axis=-1))[..., None]
            pusher, block = np.where(ok, new_pusher, pusher), np.where(ok, new_block, block)  # at the edge: neither moves
        return pusher, block

    def simulate(self, actions: np.ndarray) -> np.ndarray:
        """True final block-to-goal distances (S,) after action sequences (S, K, 2) from the
        current state (the environment itself is unchanged): the planning oracle's energy."""
        pusher = np.broadcast_to(self.pusher, (len(actions), 2))
        block = np.broadcast_to(self.block, (len(actions), 2))
        for k in range(actions.shape[1]):
            pusher, block = self.move(pusher, block, actions[:, k])
        return np.linalg.norm(block - self.goal, axis=-1)

    def exploration_direction(self) -> np.ndarray:
        """(2,) from the pusher toward the block (any length): where exploration that wants
        contacts drifts (world_model/collect.py, attraction > 0)."""
        return self.block - self.pusher

    # -- sampling and rendering -------------------------------------------------------------
    def _free_pusher(self, rng: np.random.Generator, block: np.ndarray) -> np.ndarray:
        c = self.config
        while True:
            pos = rng.uniform(c.pusher_radius, 1 - c.pusher_radius, 2)
            if not self.contact(pos, block).any():
                return pos

    def render_state(self, pusher: np.ndarray, block: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8: the block, then the pusher on top."""
        c, yy, xx = self.config, self._yy, self._xx
        frame = np.empty((c.size, c.size, 3), np.uint8)
        frame[:] = BACKGROUND
        frame[(np.abs(yy - block[0]) <= c.block_half) & (np.abs(xx - block[1]) <= c.block_half)] = BLOCK
        frame[(yy - pusher[0]) ** 2 + (xx - pusher[1]) ** 2 <= c.pusher_radius ** 2] = PUSHER
        return frame

    def render(self):
        return self.render_state(self.pusher, self.block)

    # -- gymnasium API ----------------------------------------------------------------------
    def _info(self) -> dict:
        distance = float(np.linalg.norm(self.block - self.goal))
        return {'state': np.concatenate([self.pusher, self.block]), 'goal': self.goal.copy(), 'distance': distance,
                'success': distance < self.config.success_distance}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """options: 'pusher', 'block', 'goal' (block goal), 'goal_pusher' to set them."""
        super().reset(seed=seed)
        c, rng, options = self.config, self.np_random, options or {}
        self.block = np.asarray(options.get('block', rng.uniform(0.3, 0.7, 2)), np.float64)
        if 'goal' in options:
            self.goal = np.asarray(options['goal'], np.float64)
        else:
            while True:
                angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(*c.goal_distance)
                goal = self.block + length * np.array([np.sin(angle), np.cos(angle)])
                if np.all(goal >= c.block_half) and np.all(goal <= 1 - c.block_half):
                    self.goal = goal
                    break
        self.pusher = np.asarray(options.get('pusher', self._free_pusher(rng, self.block)), np.float64)
        self.goal_pusher = np.asarray(options.get('goal_pusher', self._free_pusher(rng, self.goal)), np.float64)
        if self.contact(self.pusher, self.block).any():
            raise ValueError(f'push: the pusher {self.pusher.tolist()} overlaps the block {self.block.tolist()}')
        self.steps = 0
        info = self._info()
        info['goal_image'] = self.render_state(self.goal_pusher, self.goal)
        return self.render(), info

    def step(self, action):
        self.pusher, self.block = self.move(self.pusher, self.block, action)
        self.steps += 1
        info = self._info()
        return self.render(), -info['distance'], info['success'], self.steps >= self.config.max_steps, info
