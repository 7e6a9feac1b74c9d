"""V-JEPA 2 vitg16 cooldown, 64 frames x 256 px (arg '384' for 384 px, released for vitg16)."""
from vjepa_jax.recipes import cooldown


def get_config(arg='256'):
    return cooldown('vitg16', int(arg))
