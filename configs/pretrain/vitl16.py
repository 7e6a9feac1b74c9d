"""V-JEPA ViT-L/16, 16 frames x 224 px (the original's configs/pretrain/vitl16.yaml)."""
from vjepa_jax.recipes import base_config


def get_config():
    return base_config()
