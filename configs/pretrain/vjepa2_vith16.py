"""V-JEPA 2 vith16 pretraining, 16 frames x 256 px."""
from vjepa_jax.recipes import pretrain


def get_config():
    return pretrain('vith16')
