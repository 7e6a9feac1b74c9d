"""Push (vjepa_jax/worlds/push.py), CPU-sized: the two_rooms recipe on the pushing task. The
predictor's proprioceptive state is the pusher's position (the state's first 2 dims); the block
is seen only in the frames. Success: the block's centre within 0.05 of its goal.
"""
from vjepa_jax.recipes import simulated_world_model


def get_config(arg=None):
    return simulated_world_model('push', arg)
