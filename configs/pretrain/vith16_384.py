"""V-JEPA ViT-H/16, 16 frames x 384 px (configs/pretrain/vith16_384.yaml): 10 x 240 GPUs."""
from vjepa_jax.recipes import base_config


def get_config():
    c = base_config()
    c.model.variant = 'huge'
    c.model.img_size = 384
    c.data.global_batch_size = 2400
    return c
