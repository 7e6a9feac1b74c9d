"""V-JEPA ViT-H/16, 16 frames x 224 px (configs/pretrain/vith16.yaml)."""
from vjepa_jax.recipes import base_config


def get_config():
    c = base_config()
    c.model.variant = 'huge'
    return c
