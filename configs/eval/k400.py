"""Kinetics-400, 16 frames x 8 segments x 3 views, frame step 4 (facebookresearch/jepa
configs/evals/vitl16_k400_16x8x3.yaml). --config=configs/eval/k400.py:vjepa2_vitl16 for V-JEPA 2."""
from vjepa_jax.recipes import recipe


def get_config(encoder='vitl16'):
    return recipe('kinetics/k400', 400, segments=8, views=3, encoder=encoder)
