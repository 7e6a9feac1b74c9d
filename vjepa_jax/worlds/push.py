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
        """The block's displacement that ends an overlap with the pusher (zeros if none)."""
        c = self.config
        closest = np.clip(pusher, block - c.block_half, block + c.block_half)
        offset = pusher - closest
        dist = np.linalg.norm(offset)
        if dist >= c.pusher_radius - 1e-9:  # touching (to rounding) is not overlapping
            return np.zeros(2)
        if dist > 1e-9:
            normal = offset / dist
        else:  # the pusher's centre inside the block: push along the shallower axis
            gap = c.block_half - np.abs(pusher - block)
            axis = int(np.argmin(gap))
            normal = np.zeros(2)
            normal[axis] = np.sign(pusher[axis] - block[axis]) or 1.0
            dist = -gap[axis]
        return -normal * (c.pusher_radius - dist)

    def _move(self, action: np.ndarray) -> None:
        c = self.config
        lo_p, hi_p = c.pusher_radius, 1 - c.pusher_radius
        lo_b, hi_b = c.block_half, 1 - c.block_half
        for _ in range(c.substeps):
            pusher = np.clip(self.pusher + action / c.substeps, lo_p, hi_p)
            push = self.contact(pusher, self.block)
            block = self.block + push
            if np.any(block < lo_b) or np.any(block > hi_b):  # against the edge: neither moves
                continue
            self.pusher, self.block = pusher, block

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
        action = np.clip(np.asarray(action, np.float64), -self.config.max_speed, self.config.max_speed)
        self._move(action)
        self.steps += 1
        info = self._info()
        return self.render(), -info['distance'], info['success'], self.steps >= self.config.max_steps, info
