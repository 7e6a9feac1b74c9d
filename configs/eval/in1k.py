"""ImageNet-1k: each image repeated into a 16-frame clip, 1 segment x 1 view
(configs/evals/vitl16_in1k.yaml). Build it with
python -m vjepa_jax.data.build --builder=image_folder/imagenet1k --manual_dir=... --data_dir=...
Places205 / iNat21: --config.data.dataset=image_folder/places205 --config.data.num_classes=205 (10000)."""
from vjepa_jax.recipes import recipe


def get_config(encoder='vitl16'):
    return recipe('image_folder/imagenet1k', 1000, segments=1, views=1, encoder=encoder)
