"""V-JEPA 2 vitl16 pretraining, 16 frames x 256 px."""
from vjepa_jax.recipes import pretrain


def get_config():
    return pretrain('vitl16')
