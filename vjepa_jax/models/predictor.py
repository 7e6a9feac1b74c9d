"""The V-JEPA mask-token predictor (Flax NNX). Needs vit.py beside it.

Given the encoder's context tokens at ctx_idx and the indices tgt_idx of the tokens to
predict, it embeds context tokens to the narrow predictor width, adds positions, appends
one learned mask token per target position (one token per mask generator), runs
transformer blocks over [context, targets] and projects the target outputs back to the
encoder width. Token order is irrelevant (full attention).
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vjepa_jax.models.vit import (_layer_norm, _linear, make_blocks, run_blocks, sincos_table, token_coords,
                                   trunc_normal_init)


class Predictor(nnx.Module):
    """Narrow ViT predictor. grid: the encoder's token grid (T', H', W') or (H', W')."""

    def __init__(self, *, grid: Sequence[int], embed_dim=768, predictor_embed_dim=384, depth=12, num_heads=12,
                 mlp_ratio=4.0, num_mask_tokens=2, zero_init_mask_tokens=True, pos_embed='sincos',
                 rope_form='tiled', uniform_power=True, rescale_init=False, scan_layers=False, remat_policy='none',
                 attention_query_chunk=0, attention_impl='auto', dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.grid = tuple(grid)
        self.num_patches = int(np.prod(self.grid))
        self.pred_dim = predictor_embed_dim
        self.pos_embed, self.uniform_power = pos_embed, uniform_power
        self.scan_layers, self.remat_policy = scan_layers, remat_policy
        self.predictor_embed = _linear(embed_dim, predictor_embed_dim, dtype, param_dtype, rngs)
        tokens = []
        for _ in range(num_mask_tokens):
            shape = (1, 1, predictor_embed_dim)
            value = (jnp.zeros(shape, param_dtype) if zero_init_mask_tokens else
                     trunc_normal_init()(rngs.params(), shape, param_dtype))
            tokens.append(nnx.Param(value))
        self.mask_tokens = nnx.List(tokens)
        self.predictor_blocks = make_blocks(depth, predictor_embed_dim, num_heads, mlp_ratio, scan=scan_layers,
                                            rescale_init=rescale_init,
                                            rope_form=rope_form if pos_embed == 'rope' else None,
                                            query_chunk=attention_query_chunk, attention_impl=attention_impl,
                                            dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.predictor_norm = _layer_norm(predictor_embed_dim, dtype, param_dtype, rngs)
        self.predictor_proj = _linear(predictor_embed_dim, embed_dim, dtype, param_dtype, rngs)

    def __call__(self, ctx_tokens, ctx_idx, tgt_idx, mask_index: int):
        """ctx_tokens (B, Kc, D) encoder outputs at ctx_idx (B, Kc); tgt_idx (B, Kt);
        mask_index: which mask generator (static int) -> predictions (B, Kt, D)."""
        x = self.predictor_embed(ctx_tokens)
        b, kc, _ = x.shape
        token = self.mask_tokens[mask_index % len(self.mask_tokens)][...]
        tgt = jnp.broadcast_to(token.astype(x.dtype), (b, tgt_idx.shape[1], self.pred_dim))
        if self.pos_embed == 'sincos':
            table = jnp.asarray(sincos_table(self.pred_dim, self.grid, self.uniform_power), x.dtype)
            x = x + table[ctx_idx]
            tgt = tgt + table[tgt_idx]
        all_idx = jnp.concatenate([ctx_idx, tgt_idx], axis=1)
        coords = token_coords(all_idx, self.grid) if self.pos_embed == 'rope' else None
        x = run_blocks(self.predictor_blocks, jnp.concatenate([x, tgt], axis=1), coords,
                       scan=self.scan_layers, remat_policy=self.remat_policy)
        return self.predictor_proj(self.predictor_norm(x)[:, kc:])
