"""Two rooms (vjepa_jax/worlds/two_rooms.py), CPU-sized: random-exploration episodes, a small
V-JEPA encoder pretrained on their frames, the AC predictor trained on them, then closed-loop
planning to goal images (python -m vjepa_jax.world_model.measure). The recipe and its reasons:
recipes.simulated_world_model.

    configs/world_model/two_rooms.py        the measurement's setting
    configs/world_model/two_rooms.py:test   seconds, for the end-to-end test
"""
from vjepa_jax.recipes import simulated_world_model


def get_config(arg=None):
    return simulated_world_model('two_rooms', arg)
