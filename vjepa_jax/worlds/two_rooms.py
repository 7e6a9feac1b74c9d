"""Two rooms joined by a door: a point agent with bounded 2-D velocity actions (the setting of
PLDM / DINO-WM's "Wall"), NumPy only, deterministic from the reset seed, rendered to RGB.

The world is the unit square (y down, x right); a wall of width `wall_width` at x = 1/2 splits
it into two rooms, open over a door of height `door_height` centred at `door_y`. The agent is a
disc of radius `agent_radius`; an action a in [-max_speed, max_speed]^2 moves it by a per step,
in `substeps` straight pieces, each cancelled along an axis that would enter a wall. A task
(reset) draws a start in one room and a goal in the other; the goal is given as the image of
the agent standing there (`info['goal_image']`). Success: the agent's centre within
`success_distance` of the goal's (terminated); episodes are truncated after `max_steps`.

    env = TwoRooms()
    obs, info = env.reset(seed=0)              # obs (64, 64, 3) uint8; info: state, goal, goal_image
    obs, reward, terminated, truncated, info = env.step(np.array([0.05, 0.0]))
"""
from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

BACKGROUND = np.array([235, 235, 225], np.uint8)
WALL = np.array([90, 90, 90], np.uint8)
AGENT = np.array([220, 40, 40], np.uint8)


@dataclasses.dataclass(frozen=True)
class TwoRoomsConfig:
    size: int = 64                  # rendered frame: size x size RGB
    max_speed: float = 0.06         # per step and axis (the action bound), in world units
    agent_radius: float = 0.04
    wall_width: float = 0.06
    door_y: float = 0.5             # the door's centre
    door_height: float = 0.2
    substeps: int = 4
    success_distance: float = 0.05  # about 3 px at 64 px
    max_steps: int = 100


class TwoRooms(gym.Env):
    """gymnasium.Env: observations are RGB frames; actions bounded 2-D velocities."""
    metadata = {'render_modes': ['rgb_array'], 'render_fps': 10}

    def __init__(self, config: TwoRoomsConfig = TwoRoomsConfig(), render_mode: str | None = 'rgb_array'):
        self.config = c = config
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (c.size, c.size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-c.max_speed, c.max_speed, (2,), np.float32)
        self.state = np.full(2, 0.25)
        self.goal = np.full(2, 0.75)
        self.steps = 0
        self._start_room = 0
        centres = (np.arange(c.size) + 0.5) / c.size  # pixel centres in world units, once
        self._yy, self._xx = np.meshgrid(centres, centres, indexing='ij')
        self._walls = self._wall_mask()

    # -- geometry ---------------------------------------------------------------------------
    def free(self, pos: np.ndarray) -> np.ndarray:
        """Whether the agent (a disc at pos = (..., 2) as (y, x)) fits: inside the box, off the wall."""
        c, pos = self.config, np.asarray(pos)
        y, x, r = pos[..., 0], pos[..., 1], c.agent_radius
        inside = (r <= y) & (y <= 1 - r) & (r <= x) & (x <= 1 - r)
        in_wall_band = np.abs(x - 0.5) < c.wall_width / 2 + r
        in_door = np.abs(y - c.door_y) <= c.door_height / 2 - r
        return inside & (~in_wall_band | in_door)

    def room(self, pos: np.ndarray) -> int:
        """0 left of the wall, 1 right of it."""
        return int(pos[1] > 0.5)

    def move(self, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Positions (..., 2) after one step of (clipped) actions (..., 2), batched: each substep
        takes the full move, else its y part, else its x part, else stays (the first that fits)."""
        c = self.config
        pos = np.asarray(pos, np.float64)
        step = np.clip(np.asarray(action, np.float64), -c.max_speed, c.max_speed) / c.substeps
        for _ in range(c.substeps):
            moved = pos
            for candidate in (pos + step * [0.0, 1.0], pos + step * [1.0, 0.0], pos + step):  # last fit wins
                moved = np.where(self.free(candidate)[..., None], candidate, moved)
            pos = moved
        return pos

    def simulate(self, actions: np.ndarray) -> np.ndarray:
        """True final distances to the goal (S,) after action sequences (S, K, 2) from the current
        state (the environment itself is unchanged): the planning oracle's energy."""
        pos = np.broadcast_to(self.state, (len(actions), 2))
        for k in range(actions.shape[1]):
            pos = self.move(pos, actions[:, k])
        return np.linalg.norm(pos - self.goal, axis=-1)

    def _sample_free(self, rng: np.random.Generator, room: int) -> np.ndarray:
        c = self.config
        lo_x, hi_x = (c.agent_radius, 0.5 - c.wall_width / 2 - c.agent_radius) if room == 0 else \
            (0.5 + c.wall_width / 2 + c.agent_radius, 1 - c.agent_radius)
        while True:
            pos = np.array([rng.uniform(c.agent_radius, 1 - c.agent_radius), rng.uniform(lo_x, hi_x)])
            if self.free(pos):
                return pos

    def exploration_direction(self) -> np.ndarray:
        """(2,) toward a point at the door's height in the room the episode did not start in (any
        length): exploration that drifts along it slides along the wall, through the door and
        across (world_model/collect.py, attraction > 0)."""
        return np.array([self.config.door_y, 0.2 if self._start_room else 0.8]) - self.state

    # -- rendering --------------------------------------------------------------------------
    def _wall_mask(self) -> np.ndarray:
        c, yy, xx = self.config, self._yy, self._xx
        wall = np.abs(xx - 0.5) < c.wall_width / 2
        door = np.abs(yy - c.door_y) < c.door_height / 2
        return wall & ~door

    def render_state(self, pos: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8: the rooms with the agent at pos."""
        c = self.config
        frame = np.empty((c.size, c.size, 3), np.uint8)
        frame[:] = BACKGROUND
        frame[self._walls] = WALL
        frame[(self._yy - pos[0]) ** 2 + (self._xx - pos[1]) ** 2 <= c.agent_radius ** 2] = AGENT
        return frame

    def render(self):
        return self.render_state(self.state)

    # -- gymnasium API ----------------------------------------------------------------------
    def _info(self) -> dict:
        distance = float(np.linalg.norm(self.state - self.goal))
        return {'state': self.state.copy(), 'goal': self.goal.copy(), 'distance': distance,
                'success': distance < self.config.success_distance}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A start in one room and a goal in the other (options: 'start', 'goal' to set them)."""
        super().reset(seed=seed)
        start_room = int(self.np_random.integers(2))
        options = options or {}
        self.state = np.asarray(options.get('start', self._sample_free(self.np_random, start_room)), np.float64)
        self.goal = np.asarray(options.get('goal', self._sample_free(self.np_random, 1 - start_room)), np.float64)
        for name, pos in (('start', self.state), ('goal', self.goal)):
            if not self.free(pos):
                raise ValueError(f'two_rooms: {name} {pos.tolist()} is inside a wall or outside the box')
        self.steps = 0
        self._start_room = self.room(self.state)
        info = self._info()
        info['goal_image'] = self.render_state(self.goal)
        return self.render(), info

    def step(self, action):
        self.state = self.move(self.state, action)
        self.steps += 1
        info = self._info()
        terminated = info['success']
        truncated = self.steps >= self.config.max_steps
        return self.render(), -info['distance'], terminated, truncated, info
