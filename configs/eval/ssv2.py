"""Something-Something v2, 16 frames x 2 segments x 3 views, frame step 4
(configs/evals/vitl16_ssv2_16x2x3.yaml). --config=configs/eval/ssv2.py:vjepa2_vitl16 for V-JEPA 2."""
from vjepa_jax.recipes import recipe


def get_config(encoder='vitl16'):
    return recipe('ssv2', 174, segments=2, views=3, encoder=encoder)
