"""V-JEPA 2-AC as released: the frozen V-JEPA 2 ViT-g (256 px, RoPE) and the 24 x 1024 predictor
trained on DROID windows of 8 frames at 4 fps (teacher forcing + 2-step rollout), 315 epochs x
300 iterations, batch 256, AdamW warmup-stable-decay 7.5e-5 -> 4.25e-4 -> 0.

    python -m vjepa_jax.data.build --builder=trajectories --manual_dir=DROID_DIRS ...   (fps 4)
    python -m vjepa_jax.world_model.trainer --config=configs/world_model/vjepa2_ac_droid.py \
        --config.encoder.workdir=CONVERTED_VITG --config.data.tfds=trajectories --workdir=DIR
"""
from vjepa_jax.recipes import world_model_config


def get_config():
    return world_model_config()
