"""The model factory: (encoder, predictor) NNX modules from a config's `model` block.

    encoder, predictor = factory.build_models(config.model, factory.num_mask_tokens(config), nnx.Rngs(0))
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vjepa_jax.models.predictor import Predictor
from vjepa_jax.models.vit import VIT_VARIANTS, vit

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def build_models(model_cfg, num_mask_tokens: int, rngs: nnx.Rngs):
    """(encoder, predictor) NNX modules from the config's `model` block."""
    if model_cfg.dtype not in DTYPES:
        raise ValueError(f'model.dtype {model_cfg.dtype!r}: choose one of {sorted(DTYPES)}')
    dtype = DTYPES[model_cfg.dtype]
    shared = dict(pos_embed=model_cfg.pos_embed, rope_form=model_cfg.rope_form, uniform_power=model_cfg.uniform_power,
                  rescale_init=model_cfg.rescale_init, scan_layers=model_cfg.scan_layers,
                  remat_policy=model_cfg.remat_policy, attention_query_chunk=model_cfg.attention_query_chunk,
                  attention_impl=model_cfg.attention_impl,
                  dtype=dtype, rngs=rngs)
    encoder = vit(model_cfg.variant, img_size=model_cfg.img_size, num_frames=model_cfg.num_frames,
                  patch_size=model_cfg.patch_size, tubelet_size=model_cfg.tubelet_size, in_chans=model_cfg.in_chans,
                  **shared)
    spec = VIT_VARIANTS[model_cfg.variant]
    predictor = Predictor(grid=encoder.grid, embed_dim=spec['embed_dim'], predictor_embed_dim=model_cfg.pred_embed_dim,
                          depth=model_cfg.pred_depth, num_heads=model_cfg.pred_num_heads or spec['num_heads'],
                          num_mask_tokens=num_mask_tokens, zero_init_mask_tokens=model_cfg.zero_init_mask_tokens,
                          **shared)
    return encoder, predictor


def num_mask_tokens(config) -> int:
    """Learned mask tokens: model.num_mask_tokens, or one per mask generator (0)."""
    return config.model.num_mask_tokens or len(config.mask.generators)


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
