"""PushT (the gym-pusht package, through vjepa_jax/worlds/gym_adapter.py): the simulated-world
recipe on a third-party environment. Actions: 40 px moves of the agent's target (a model step
sums 5: +-200 px); states in pixels of the 512 px table (the predictor's proprioceptive state is
the agent's x, y). Success: the environment's own rule (the T covers > 95 % of its goal).
No oracle: pymunk's simulator cannot be copied (measure --conditions leaves it out).
"""
from vjepa_jax.recipes import simulated_world_model


def get_config(arg=None):
    c = simulated_world_model('pusht', arg)
    c.predictor.update(action_scale=1 / (5 * 40.0), state_scale=1 / 512)
    return c
