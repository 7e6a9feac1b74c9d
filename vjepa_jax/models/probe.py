"""Attentive probes for frozen features (Flax NNX). Needs vit.py beside it.

A probe pools a frozen encoder's tokens (B, N, D) with learned queries through one
cross-attention block and classifies each pooled query with a linear head.

  style 'vjepa1' (facebookresearch/jepa): queries -> cross-attention -> (depth - 1) self-attention
      blocks on the queries. The cross-attention owns an output projection `xattn.proj` that
      the original never applies; it is kept (and left unused) so the released probes load.
  style 'vjepa2' (facebookresearch/vjepa2): (depth - 1) self-attention blocks on the TOKENS,
      then the cross-attention (no projection). Released probes: depth 4, 16 heads.

Heads: one linear layer per (name, num_classes); head i reads query i (one query for
classification, `linear`; three for EK100 anticipation: verb, noun, action).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vjepa_jax.models.vit import Mlp, _layer_norm, _linear, attention, make_blocks, run_blocks, trunc_normal_init

STYLES = ('vjepa1', 'vjepa2')
NORM_EPS = 1e-5  # the probes use nn.LayerNorm's default (the encoders use 1e-6)


def torch_default_linear(d_in, d_out, dtype, param_dtype, rngs):
    """nn.Linear's own init, U(+-1/sqrt(d_in)) for weight and bias: the original's head is built
    outside the pooler's trunc-normal init."""
    bound = 1.0 / math.sqrt(d_in)
    uniform = lambda key, shape, dt=jnp.float32: jax.random.uniform(key, shape, dt, -bound, bound)  # noqa: E731
    return nnx.Linear(d_in, d_out, dtype=dtype, param_dtype=param_dtype, kernel_init=uniform, bias_init=uniform,
                      rngs=rngs)


class CrossAttention(nnx.Module):
    """Queries (B, Q, D) attend to tokens (B, N, D); k and v from one fused `kv` (torch layout:
    rows [k; v], then heads). keep_proj: create the original V-JEPA 1 `proj`, never applied."""

    def __init__(self, dim, num_heads, *, keep_proj=False, attention_impl='auto', dtype=None, param_dtype=jnp.float32,
                 rngs):
        self.num_heads, self.attention_impl = num_heads, attention_impl
        self.q = _linear(dim, dim, dtype, param_dtype, rngs)
        self.kv = _linear(dim, 2 * dim, dtype, param_dtype, rngs)
        self.proj = _linear(dim, dim, dtype, param_dtype, rngs) if keep_proj else None

    def __call__(self, queries, tokens):
        b, nq, d = queries.shape
        n, h = tokens.shape[1], self.num_heads
        q = self.q(queries).reshape(b, nq, h, d // h)
        k, v = jnp.moveaxis(self.kv(tokens).reshape(b, n, 2, h, d // h), 2, 0)
        return attention(q, k, v, impl=self.attention_impl).reshape(b, nq, d)


class CrossAttentionBlock(nnx.Module):
    """q + xattn(q, LN(x)), then q + MLP(LN(q)); the queries themselves are not normed."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, *, keep_proj=False, attention_impl='auto', dtype=None,
                 param_dtype=jnp.float32, rngs):
        self.norm1 = _layer_norm(dim, dtype, param_dtype, rngs, NORM_EPS)
        self.xattn = CrossAttention(dim, num_heads, keep_proj=keep_proj, attention_impl=attention_impl, dtype=dtype,
                                    param_dtype=param_dtype,
                                    rngs=rngs)
        self.norm2 = _layer_norm(dim, dtype, param_dtype, rngs, NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, queries, tokens):
        q = queries + self.xattn(queries, self.norm1(tokens))
        return q + self.mlp(self.norm2(q))


def _rescale(linear, layer_id):
    linear.kernel.set_value(linear.kernel[...] / math.sqrt(2.0 * layer_id))


class AttentivePooler(nnx.Module):
    """Learned queries (1, Q, D) -> pooled (B, Q, D). depth counts all blocks (cross + self)."""

    def __init__(self, *, embed_dim, num_heads, num_queries=1, depth=1, mlp_ratio=4.0, style='vjepa2',
                 attention_impl='auto', dtype=None, param_dtype=jnp.float32, rngs):
        if style not in STYLES:
            raise ValueError(f'probe style {style!r}: use one of {STYLES}')
        self.style = style
        self.query_tokens = nnx.Param(trunc_normal_init()(rngs.params(), (1, num_queries, embed_dim), param_dtype))
        self.cross_attention_block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, keep_proj=style == 'vjepa1',
                                                         attention_impl=attention_impl, dtype=dtype,
                                                         param_dtype=param_dtype, rngs=rngs)
        self.blocks = make_blocks(depth - 1, embed_dim, num_heads, mlp_ratio, scan=False, rescale_init=False,
                                  rope_form=None, attention_impl=attention_impl, norm_eps=NORM_EPS, dtype=dtype,
                                  param_dtype=param_dtype, rngs=rngs)
        # the originals' output-layer rescaling at init
        xblock = self.cross_attention_block
        if style == 'vjepa1':
            _rescale(xblock.xattn.proj, 1)
            _rescale(xblock.mlp.fc2, 1)
            for i, blk in enumerate(self.blocks, start=2):
                _rescale(blk.attn.proj, i)
                _rescale(blk.mlp.fc2, i)
        else:
            for i, blk in enumerate(self.blocks, start=1):
                _rescale(blk.attn.proj, i)
                _rescale(blk.mlp.fc2, i)
            _rescale(xblock.mlp.fc2, max(depth - 1, 1))

    def __call__(self, tokens):
        """tokens (B, N, D) -> (B, Q, D)."""
        queries = jnp.broadcast_to(self.query_tokens[...].astype(tokens.dtype),
                                   (tokens.shape[0], *self.query_tokens.shape[1:]))
        if self.style == 'vjepa2' and len(self.blocks):
            tokens = run_blocks(self.blocks, tokens, None, scan=False, remat_policy='none')
        q = self.cross_attention_block(queries, tokens)
        if self.style == 'vjepa1' and len(self.blocks):
            q = run_blocks(self.blocks, q, None, scan=False, remat_policy='none')
        return q


class AttentiveProbe(nnx.Module):
    """pooler + one linear head per (name, num_classes) in `heads`; head i reads query i.

    The attribute names are the original's (`pooler`, `linear`, `verb_classifier`, ...), so
    parameter paths map one to one onto the released state dicts."""

    def __init__(self, *, embed_dim, num_heads, heads: Sequence[tuple[str, int]] = (('linear', 1000),), depth=1,
                 mlp_ratio=4.0, style='vjepa2', attention_impl='auto', dtype=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        heads = tuple((str(name), int(n)) for name, n in heads)
        self.head_names = tuple(name for name, _ in heads)
        self.pooler = AttentivePooler(embed_dim=embed_dim, num_heads=num_heads, num_queries=len(heads), depth=depth,
                                      mlp_ratio=mlp_ratio, style=style, attention_impl=attention_impl, dtype=dtype,
                                      param_dtype=param_dtype, rngs=rngs)
        for name, num_classes in heads:
            if name in ('pooler', 'head_names'):
                raise ValueError(f'probe head name {name!r} is reserved')
            setattr(self, name, torch_default_linear(embed_dim, num_classes, dtype, param_dtype, rngs))

    def __call__(self, tokens) -> dict:
        """tokens (B, N, D) -> {head name: logits (B, num_classes)}."""
        pooled = self.pooler(tokens)
        return {name: getattr(self, name)(pooled[:, i]) for i, name in enumerate(self.head_names)}


def probe_from_spec(spec: dict, rngs: nnx.Rngs, **kwargs) -> AttentiveProbe:
    """Build from a JSON-able spec {embed_dim, num_heads, depth, style, heads: [[name, n], ...]}."""
    return AttentiveProbe(embed_dim=spec['embed_dim'], num_heads=spec['num_heads'], depth=spec['depth'],
                          style=spec['style'], heads=[tuple(h) for h in spec['heads']],
                          mlp_ratio=spec.get('mlp_ratio', 4.0), rngs=rngs, **kwargs)
