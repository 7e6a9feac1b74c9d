"""Third-party gymnasium environments through the planner's interface, and PushT (`gym-pusht`).

Our planner and data collection (world_model/collect.py) rely on this interface (as
worlds/two_rooms.py and worlds/push.py implement it):

    obs, info = env.reset(seed=s)                 # obs: (size, size, 3) uint8 RGB
    obs, reward, terminated, truncated, info = env.step(action)   # action inside env.action_space (a Box)
    info: 'state' (1-D float array), 'goal' (the goal's state), 'goal_image' ((size, size, 3) uint8),
          'distance' (float, task-specific, 0 at the goal), 'success' (bool)

`PlannerAdapter` wraps any gymnasium env into it, given a few functions:

    state_fn(env, obs, info) -> np.ndarray         the state after a reset or step
    goal_fn(env, options) -> (goal_state, frame)   after each reset: the goal and its image (any size)
    distance_fn(state, goal_state) -> float
    success_fn(state, goal_state) -> bool          default: distance <= success_distance
    frame_fn(env, obs) -> RGB frame                default: obs if it is an image, obs['pixels'], or env.render()

Frames of any size are resized to size x size with area averaging (cv2.INTER_AREA). The
inner env's info keys are kept; reward is the inner env's; terminated: success, or the inner
env's own termination unless env_termination=False.

PushT (`pip install gym-pusht`; the env is gym_pusht.envs.PushTEnv, a 512 x 512 px table, x
right, y down, as the frame shows it): `make_pusht(size=64)`. State (5,): agent x, y, the T's
x, y (its body origin: the middle of the bar's outer edge, away from the stem) in px of the 512 table, and its
angle in radians, in [0, 2 pi). The default task is the env's own: the T to the fixed goal pose
(256, 256, pi/4); the goal image shows the T there and the agent at `goal_agent` (default
(256, 400), where the env's own setup puts it). reset(options={'start_state': s, 'goal_state': g})
sets either exactly (g: a 5-vector, e.g. a state reached in a rollout, as DINO-WM does).
distance: the mean displacement of the T's 8 corners between its pose and the goal pose, px (0
iff the poses agree; the agent is not part of it). success: 'coverage' (the env's rule: the T
covers > 95% of the goal T's area) or 'dino_wm' (DINO-WM's: the 4-vector of agent and T
positions within 20 px of the goal's and the angle within pi/9), or a function (state, goal).
Actions: 'delta' (default): a displacement of the agent's target in px, Box(-max_delta,
max_delta) added to the agent's position and clipped to [0, 512] (DINO-WM's relative actions;
collect.py's random walk starts at 0 and assumes a Box around it); 'absolute': the env's own
Box(0, 512), the agent's target position (the planner works with any Box bounds).
Terminated: success by this rule (the env's own termination, coverage of its fixed goal, is
ignored); reward: the env's own (coverage of its fixed goal / 0.95, at most 1). Deterministic
from the reset seed; goals are rendered by a second, private PushTEnv.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

PUSHT_TABLE = 512.0  # px: the env's world, actions and state share these units


def _resize(frame, size: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f'gym_adapter: frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}')
    if frame.shape[:2] == (size, size):
        return frame.copy()
    import cv2
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def default_frame(env: gym.Env, obs) -> np.ndarray:
    """The observation if it is an image, else its 'pixels' entry, else env.render()."""
    if isinstance(obs, np.ndarray) and obs.ndim == 3:
        return obs
    if isinstance(obs, dict) and 'pixels' in obs:
        return obs['pixels']
    return env.render()


class PlannerAdapter(gym.Wrapper):
    """gymnasium.Wrapper: any env -> (size, size, 3) uint8 frames and the planner's info keys."""

    def __init__(self, env: gym.Env, *, state_fn: Callable, goal_fn: Callable, distance_fn: Callable,
                 success_fn: Callable | None = None, success_distance: float | None = None,
                 frame_fn: Callable = default_frame, size: int = 64, env_termination: bool = True):
        super().__init__(env)
        if success_fn is None:
            if success_distance is None:
                raise ValueError('gym_adapter: pass success_fn or success_distance')
            success_fn = lambda state, goal: distance_fn(state, goal) <= success_distance  # noqa: E731
        self.state_fn, self.goal_fn, self.distance_fn = state_fn, goal_fn, distance_fn
        self.success_fn, self.frame_fn, self.size = success_fn, frame_fn, size
        self.env_termination = env_termination
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.goal_state, self.goal_image = None, None

    def _planner_info(self, obs, info: dict) -> dict:
        state = np.asarray(self.state_fn(self.env, obs, info), np.float64)
        distance = float(self.distance_fn(state, self.goal_state))
        return {**info, 'state': state, 'goal': self.goal_state.copy(), 'goal_image': self.goal_image,
                'distance': distance, 'success': bool(self.success_fn(state, self.goal_state))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        obs, info = self.env.reset(seed=seed, options=options)
        goal_state, goal_frame = self.goal_fn(self.env, options)
        self.goal_state = np.asarray(goal_state, np.float64)
        self.goal_image = _resize(goal_frame, self.size)
        return _resize(self.frame_fn(self.env, obs), self.size), self._planner_info(obs, info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = self._planner_info(obs, info)
        return (_resize(self.frame_fn(self.env, obs), self.size), reward,
                bool((terminated and self.env_termination) or info['success']), bool(truncated), info)


# -- PushT ------------------------------------------------------------------------------------
def _wrap_angle(a):
    return np.abs((np.asarray(a) + np.pi) % (2 * np.pi) - np.pi)


class PushTTask:
    """PushT's state, exact state setting, goal rendering, distance and success (see the module doc)."""

    def __init__(self, size: int = 64, goal_agent=(256.0, 400.0), success='coverage', **env_kwargs):
        from gym_pusht.envs import PushTEnv
        self.size, self.goal_agent = size, np.asarray(goal_agent, np.float64)
        self._env_kwargs = dict(obs_type='pixels', observation_width=int(PUSHT_TABLE),
                                observation_height=int(PUSHT_TABLE), **env_kwargs)
        self.renderer = PushTEnv(**self._env_kwargs)  # private: renders goals and given states
        self.renderer.reset(seed=0)
        block = self.renderer.block
        self.goal_pose = np.asarray(self.renderer.goal_pose, np.float64)  # the env's fixed (x, y, angle)
        self.corners = np.array([tuple(v) for shape in block.shapes for v in shape.get_vertices()])  # (8, 2) local
        self.parts = [np.array([tuple(v) for v in shape.get_vertices()]) for shape in block.shapes]
        self.threshold = float(self.renderer.success_threshold)
        if callable(success):
            self.success = success
        elif success in ('coverage', 'dino_wm'):
            self.success = self.covered if success == 'coverage' else self.dino_wm_success
        else:
            raise ValueError(f"pusht: success={success!r}: 'coverage', 'dino_wm' or a function (state, goal)")

    def make_env(self):
        from gym_pusht.envs import PushTEnv
        return PushTEnv(**self._env_kwargs)

    # -- state ------------------------------------------------------------------------------
    @staticmethod
    def state(env, obs=None, info=None) -> np.ndarray:
        u = env.unwrapped
        return np.array([*u.agent.position, *u.block.position, u.block.angle % (2 * np.pi)], np.float64)

    def reset_option(self, env, state) -> np.ndarray:
        """The env's 'reset_to_state' that yields `state` exactly: the env sets the T's position
        before its angle, and the angle turns it about its centre of gravity (see its docstring)."""
        ax, ay, bx, by, angle = np.asarray(state, np.float64)
        cog = np.array(tuple(env.unwrapped.block.center_of_gravity))
        c, s = np.cos(angle), np.sin(angle)
        position = np.array([bx, by]) - cog + np.array([c * cog[0] - s * cog[1], s * cog[0] + c * cog[1]])
        return np.array([ax, ay, *position, angle])

    def render(self, state) -> np.ndarray:
        """(size, size, 3) uint8: the table with the agent and the T at `state`."""
        obs, _ = self.renderer.reset(options={'reset_to_state': self.reset_option(self.renderer, state)})
        return _resize(obs, self.size)

    # -- task -------------------------------------------------------------------------------
    def goal(self, env, options: dict):
        goal = options.get('goal_state')
        goal = np.array([*self.goal_agent, *self.goal_pose]) if goal is None else np.asarray(goal, np.float64)
        return goal, self.render(goal)

    def _world(self, points, pose):
        c, s = np.cos(pose[2]), np.sin(pose[2])
        return points @ np.array([[c, s], [-s, c]]) + pose[:2]

    def distance(self, state, goal) -> float:
        """Mean displacement of the T's 8 corners between the two poses, px of the 512 table."""
        a, b = self._world(self.corners, state[2:5]), self._world(self.corners, goal[2:5])
        return float(np.linalg.norm(a - b, axis=1).mean())

    def coverage(self, state, goal) -> float:
        """The fraction of the goal T's area the T covers (the env's reward and success measure)."""
        from shapely.geometry import MultiPolygon, Polygon
        block, target = (MultiPolygon([Polygon(self._world(p, pose)) for p in self.parts])
                         for pose in (state[2:5], goal[2:5]))
        return float(block.intersection(target).area / target.area)

    def covered(self, state, goal) -> bool:
        return self.coverage(state, goal) > self.threshold

    @staticmethod
    def dino_wm_success(state, goal) -> bool:
        """DINO-WM's PushT rule (env/pusht/pusht_wrapper.py eval_state): agent and T positions
        within 20 px (one norm over the 4 numbers), T angle within pi / 9."""
        state, goal = np.asarray(state), np.asarray(goal)
        return bool(np.linalg.norm(goal[:4] - state[:4]) < 20 and _wrap_angle(goal[4] - state[4]) < np.pi / 9)


class PushTStart(gym.Wrapper):
    """reset(options={'start_state': s}) sets the env to s exactly (the env's own option does not)."""

    def __init__(self, env, task: PushTTask):
        super().__init__(env)
        self.task = task

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        if options.get('start_state') is not None:
            self.env.reset(seed=seed)  # the T's centre of gravity exists once the env has been set up
            options['reset_to_state'] = self.task.reset_option(self.env, options.pop('start_state'))
            seed = None
        return self.env.reset(seed=seed, options=options)


class DeltaAction(gym.ActionWrapper):
    """Actions are displacements of the agent's target: target = agent position + a, clipped to the table."""

    def __init__(self, env, max_delta: float):
        super().__init__(env)
        self.action_space = gym.spaces.Box(-max_delta, max_delta, (2,), np.float32)

    def action(self, action):
        action = np.clip(np.asarray(action, np.float64), self.action_space.low, self.action_space.high)
        return np.clip(np.array(tuple(self.env.unwrapped.agent.position)) + action, 0.0, PUSHT_TABLE)


def make_pusht(size: int = 64, actions: str = 'delta', max_delta: float = 40.0, success='coverage',
               goal_agent=(256.0, 400.0), max_steps: int | None = 300, **env_kwargs) -> PlannerAdapter:
    """PushT through the planner interface (see the module doc); env_kwargs go to PushTEnv
    (block_cog, damping). max_steps: truncation (None: never; the registered env's is 300)."""
    task = PushTTask(size, goal_agent, success, **env_kwargs)
    env = PushTStart(task.make_env(), task)
    if actions == 'delta':
        env = DeltaAction(env, max_delta)
    elif actions != 'absolute':
        raise ValueError(f"pusht: actions={actions!r}: 'delta' or 'absolute'")
    if max_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_steps)
    adapter = PlannerAdapter(env, state_fn=task.state, goal_fn=task.goal, distance_fn=task.distance,
                             success_fn=task.success, size=size, env_termination=False)
    adapter.task = task
    return adapter
