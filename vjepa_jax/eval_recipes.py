"""Frozen-evaluation recipes shared by configs/eval/*.py (the originals' configs/evals)."""
from vjepa_jax.config import eval_config

# V-JEPA 2: 4-block probes, 16 heads, 20 heads trained together over this grid, best reported
VJEPA2_LR = [5e-3, 3e-3, 1e-3, 3e-4, 1e-4]
VJEPA2_WD = [0.01, 0.1, 0.4, 0.8]
ENCODERS = {'vitl16': ('configs/pretrain/vitl16.py', 224), 'vith16': ('configs/pretrain/vith16.py', 224),
            'vith16_384': ('configs/pretrain/vith16_384.py', 384),
            'vjepa2_vitl16': ('configs/pretrain/vjepa2_vitl16.py', 256),
            'vjepa2_vitg16_384': ('configs/pretrain/vjepa2_vitg16_cooldown.py:384', 384)}


def recipe(dataset: str, num_classes: int, segments: int, views: int, encoder: str = 'vitl16'):
    """The V-JEPA 1 recipe (one query, one cross-attention block; AdamW lr 1e-3 cosine, wd 0.01,
    20 epochs); encoders named 'vjepa2_*' get the V-JEPA 2 probe and its lr x wd grid."""
    if encoder not in ENCODERS:
        raise ValueError(f'encoder {encoder!r}: choose one of {sorted(ENCODERS)}')
    c = eval_config()
    c.encoder.config, c.data.resolution = ENCODERS[encoder]
    # released V-JEPA 2 predictors carry 10 mask tokens (convert_torch says so); the workdir's layout needs it
    c.encoder.model_overrides = ({'img_size': c.data.resolution, 'num_mask_tokens': 10}
                                 if encoder.startswith('vjepa2') else {})
    c.data.update(dataset=dataset, num_classes=num_classes, num_segments=segments, num_views=views)
    if encoder.startswith('vjepa2'):
        c.probe.update(style='vjepa2', depth=4, num_heads=16)
        c.optim.update(lr=VJEPA2_LR, weight_decay=VJEPA2_WD, decay_all=True)
    return c
