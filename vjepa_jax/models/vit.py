"""Video Vision Transformer (the V-JEPA encoder), Flax NNX, self-contained.

Input clips are channels-last: video (B, T, H, W, C), image (B, H, W, C).
Tokens are ordered (t, h, w) like the original's `flatten(2)` of a Conv3d output,
so token index n = t * (H' * W') + h * W' + w on the (T', H', W') token grid.

Copy this one file into your project to use the encoder: it needs only
jax, numpy and flax.nnx.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# One definition of every published variant: dim, depth, heads, MLP ratio.
VIT_VARIANTS = {
    'micro': dict(embed_dim=96, depth=2, num_heads=3, mlp_ratio=4.0),  # the parity fixture
    'mini': dict(embed_dim=96, depth=4, num_heads=3, mlp_ratio=4.0),   # the CPU demo (configs/demo.py)
    'tiny': dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
    'small': dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    'base': dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    'large': dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    'huge': dict(embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
    'giant': dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
    # V-JEPA 2's "vit_giant_xformers": 22 heads of 64, MLP hidden 6144.
    'giant_xformers': dict(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11),
}

REMAT_POLICIES = {
    'none': None,  # no rematerialisation
    'full': jax.checkpoint_policies.nothing_saveable,  # recompute the whole block
    'dots': jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs
    'dots_no_batch': jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def trunc_normal_init(std: float = 0.02):
    """The original's `trunc_normal_(std=std)`: N(0, std) truncated at the ABSOLUTE
    bounds [-2, 2] (timm semantics), not at +-2 std."""
    def init(key, shape, dtype=jnp.float32):
        return (jax.random.truncated_normal(key, -2.0 / std, 2.0 / std, shape, jnp.float32) * std).astype(dtype)
    return init


# ----------------------------------------------------------------------------------------
# Fixed sin-cos position tables (NumPy, float64 like the original, returned float32)
# ----------------------------------------------------------------------------------------
def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim) table [sin(p w_i), cos(p w_i)], w_i = 10000^(-i/(dim/2))."""
    assert dim % 2 == 0, dim
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.asarray(pos, np.float64).reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(dim: int, grid: Sequence[int], uniform_power: bool = True) -> np.ndarray:
    """(T', H', W') grid -> (T'H'W', dim) table, parts concatenated [t, h, w] then cut to dim.

    uniform_power: each axis gets int(ceil(dim / 6) * 2) dims (all V-JEPA configs);
    otherwise t gets dim // 2 and h, w get dim // 4 each.
    """
    t, h, w = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid], indexing='ij')
    if uniform_power:
        dt = dh = dw = int(np.ceil(dim / 6) * 2)
    else:
        dt, dh, dw = dim // 2, dim // 4, dim // 4
    table = np.concatenate([sincos_1d(dt, t), sincos_1d(dh, h), sincos_1d(dw, w)], axis=1)
    return table[:, :dim].astype(np.float32)


def sincos_2d(dim: int, grid: Sequence[int]) -> np.ndarray:
    """(H', W') grid -> (H'W', dim) table, halves [h, w] (image mode)."""
    h, w = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid], indexing='ij')
    return np.concatenate([sincos_1d(dim // 2, h), sincos_1d(dim // 2, w)], axis=1).astype(np.float32)


def sincos_table(dim: int, grid: Sequence[int], uniform_power: bool = True) -> np.ndarray:
    """The table for a 3-D (video) or 2-D (image) token grid."""
    return sincos_3d(dim, grid, uniform_power) if len(grid) == 3 else sincos_2d(dim, grid)


def _interp_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """(n_out, n_in) weights reproducing torch `interpolate(align_corners=False)` along one
    axis: 'linear' (clamped source index) or 'cubic' (Keys kernel, A = -0.75)."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), np.float64)
    for o in range(n_out):
        src = (o + 0.5) * scale - 0.5
        if mode == 'linear':
            src = max(src, 0.0)
            i0 = min(int(np.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            lam = src - i0
            m[o, i0] += 1.0 - lam
            m[o, i1] += lam
        else:
            a = -0.75
            i0 = int(np.floor(src))
            t = src - i0

            def k(x):
                x = abs(x)
                if x <= 1:
                    return ((a + 2) * x - (a + 3)) * x * x + 1
                return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
            for j, wgt in zip(range(i0 - 1, i0 + 3), (k(t + 1), k(t), k(1 - t), k(2 - t))):
                m[o, min(max(j, 0), n_in - 1)] += wgt
    return m


def interpolate_table(table: np.ndarray, grid_in: Sequence[int], grid_out: Sequence[int]) -> np.ndarray:
    """Resize a (prod(grid_in), D) position table to grid_out: trilinear for video grids,
    bicubic for image grids, numerically as the original's F.interpolate."""
    if tuple(grid_in) == tuple(grid_out):
        return table
    mode = 'linear' if len(grid_in) == 3 else 'cubic'
    out = table.reshape(*grid_in, -1).astype(np.float64)
    for axis, (n_in, n_out) in enumerate(zip(grid_in, grid_out)):
        out = np.moveaxis(np.tensordot(_interp_matrix(n_in, n_out, mode), out, axes=([1], [axis])), 0, axis)
    return out.reshape(-1, table.shape[-1]).astype(np.float32)


# ----------------------------------------------------------------------------------------
# 3-D rotary position embedding (V-JEPA 2)
# ----------------------------------------------------------------------------------------
def token_coords(token_idx: jax.Array, grid: Sequence[int]) -> jax.Array:
    """(..., N) flat token indices -> (..., N, 3) integer (t, h, w) on a (T', H', W') grid
    (an image grid (H', W') gets t = 0)."""
    hh, ww = grid[-2], grid[-1]
    t = token_idx // (hh * ww)
    rem = token_idx - t * (hh * ww)
    return jnp.stack([t, rem // ww, rem % ww], axis=-1)


def rope_rotate(x: jax.Array, pos: jax.Array, form: str) -> jax.Array:
    """Rotate pairs (x[2i], x[2i+1]) of x (B, N, heads, n) by angles pos (B, N) * w_k,
    w_k = 10000^(-k / (n/2)).

    form 'interleaved': pair i uses frequency i (the standard RoPE).
    form 'tiled': dimension j uses frequency j mod n/2, the released V-JEPA 2 code
    (sin/cos built with `repeat`), which its weights need.
    """
    n = x.shape[-1]
    omega = 1.0 / 10000 ** (jnp.arange(n // 2, dtype=jnp.float32) / (n / 2.0))
    freq_of_dim = jnp.arange(n) // 2 if form == 'interleaved' else jnp.arange(n) % (n // 2)
    if form not in ('interleaved', 'tiled'):
        raise ValueError(f"rope form {form!r}: use 'tiled' (released V-JEPA 2) or 'interleaved'")
    angle = pos.astype(jnp.float32)[..., None, None] * omega[freq_of_dim]  # (B, N, 1, n)
    xf = x.astype(jnp.float32)
    pairs = xf.reshape(*x.shape[:-1], n // 2, 2)
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return (xf * jnp.cos(angle) + rotated * jnp.sin(angle)).astype(x.dtype)


def apply_rope_3d(x: jax.Array, coords: jax.Array, form: str) -> jax.Array:
    """x (B, N, heads, head_dim); coords (B, N, 3). Chunks of 2*((head_dim//3)//2) dims are
    rotated by t, h, w in that order; the remaining dims pass through."""
    n = 2 * ((x.shape[-1] // 3) // 2)
    parts = [rope_rotate(x[..., i * n:(i + 1) * n], coords[..., i], form) for i in range(3)]
    return jnp.concatenate(parts + [x[..., 3 * n:]], axis=-1)


# ----------------------------------------------------------------------------------------
# Transformer block
# ----------------------------------------------------------------------------------------
def _linear(d_in, d_out, dtype, param_dtype, rngs, std=0.02):
    return nnx.Linear(d_in, d_out, dtype=dtype, param_dtype=param_dtype, kernel_init=trunc_normal_init(std),
                      bias_init=nnx.initializers.zeros, rngs=rngs)


def _layer_norm(dim, dtype, param_dtype, rngs, eps=1e-6):
    return nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


ATTENTION_IMPLS = ('auto', 'flash', 'xla', 'cudnn', 'pallas')
FLASH_BLOCK = 128   # 'flash': queries per block (64-256 within 5 % of each other at 1568 tokens, 2 CPU cores)
FLASH_UNROLL = 4    # 'flash': up to this many query blocks run as straight-line code, more in a loop
PALLAS_BLOCK = 128  # the Pallas TPU kernel's block: token counts are padded to a multiple of it


def attention(q, k, v, query_chunk: int = 0, steps=None, impl: str = 'auto'):
    """Softmax attention, q (B, Nq, heads, head_dim), k v (B, Nk, heads, head_dim) -> like q.
    steps: optional (N,) int, each token's time step (self-attention only): a query attends only
    to keys of its own or an earlier step (block-causal), the mask built here from the indices.
    impl (every path gives the same result within float tolerance; benchmarks/attention.py):
      'auto'    'flash' on CPU above FLASH_BLOCK queries, else 'xla' (cuDNN and Pallas are opt-in
                until measured);
      'flash'   flash attention in JAX (_flash): query blocks of FLASH_BLOCK (or query_chunk),
                float32 softmax; the backward keeps only the output and the log-sum-exp and
                recomputes each block's scores, so no (Nq, Nk) matrix is ever stored. On 2 CPU
                cores, forward + backward at 1568 tokens take 0.42x the time of 'xla';
      'xla'     jax.nn.dot_product_attention's XLA path, any backend;
      'cudnn'   cuDNN's fused flash attention (NVIDIA GPUs; bfloat16 or float16 inputs);
      'pallas'  the Pallas TPU flash-attention kernel: tokens padded to a multiple of
                PALLAS_BLOCK, the padding masked by segment ids (on CPU it runs in TPU interpret
                mode: slow, for tests); no block-causal `steps`.
    query_chunk > 0: 'xla' takes queries in blocks of that many, each block rematerialised in
    the backward pass (score memory (B, heads, query_chunk, Nk), not Nq x Nk: memory for time);
    'flash' uses it as its block size."""
    if impl == 'auto':
        impl = 'flash' if jax.default_backend() == 'cpu' and q.shape[1] > FLASH_BLOCK else 'xla'
    if impl == 'cudnn':
        return jax.nn.dot_product_attention(q, k, v, mask=_step_mask(steps, steps), implementation='cudnn')
    if impl == 'pallas':
        if steps is not None:
            raise ValueError("attention_impl 'pallas' has no block-causal path (the AC predictor): use 'xla' "
                             "or 'cudnn' for it")
        return _pallas_attention(q, k, v)
    if impl == 'flash':
        return _flash_attention(q, k, v, query_chunk or FLASH_BLOCK, steps)
    if impl != 'xla':
        raise ValueError(f'attention_impl {impl!r}: choose one of {ATTENTION_IMPLS}')
    n = q.shape[1]
    if not query_chunk or n <= query_chunk:
        return jax.nn.dot_product_attention(q, k, v, mask=_step_mask(steps, steps), implementation='xla')
    one = jax.checkpoint(_xla_block)
    blocks, query_steps = _query_blocks(q.transpose(0, 2, 1, 3), steps, query_chunk)  # (nb, B, heads, c, d)
    out = jax.lax.map(lambda a: one(a[0].transpose(0, 2, 1, 3), k, v, a[1], steps), (blocks, query_steps))
    return jnp.moveaxis(out, 0, 1).reshape(q.shape[0], -1, *q.shape[2:])[:, :n]


def _step_mask(query_steps, key_steps):
    """(1, 1, Nq, Nk) bool, True where a query may read a key (its own or an earlier step), or
    None without steps."""
    return None if key_steps is None else (query_steps[:, None] >= key_steps[None, :])[None, None]


def _query_blocks(qh, steps, block: int):
    """qh (B, heads, N, d) -> (blocks (nb, B, heads, block, d) zero-padded, their steps (nb, block)
    edge-padded, or None)."""
    b, h, n, d = qh.shape
    pad = -n % block
    blocks = jnp.moveaxis(jnp.pad(qh, ((0, 0), (0, 0), (0, pad), (0, 0))).reshape(b, h, -1, block, d), 2, 0)
    return blocks, None if steps is None else jnp.pad(steps, (0, pad), mode='edge').reshape(-1, block)


def _xla_block(q, k, v, query_steps, key_steps):
    """jax.nn.dot_product_attention on one query block q (B, c, heads, d)."""
    return jax.nn.dot_product_attention(q, k, v, mask=_step_mask(query_steps, key_steps), implementation='xla')


def _flash_attention(q, k, v, block: int, steps):
    """'flash' on (B, N, heads, head_dim) inputs: heads-major blocks through _flash."""
    n = q.shape[1]
    qh, kh, vh = (x.transpose(0, 2, 1, 3) for x in (q * q.shape[-1] ** -0.5, k, v))
    blocks, query_steps = _query_blocks(qh, steps, block)
    out = _flash(blocks, kh, vh, query_steps, steps)  # (nb, B, heads, block, d)
    return jnp.moveaxis(out, 0, 2).reshape(q.shape[0], q.shape[2], -1, q.shape[3])[:, :, :n].transpose(0, 2, 1, 3)


def _block_scores(qb, k, query_steps, key_steps):
    """One block's scores (B, heads, c, Nk) float32; a later step's key -> float32 min (exp: 0)."""
    s = jnp.einsum('bhqd,bhkd->bhqk', qb, k, preferred_element_type=jnp.float32)
    return s if key_steps is None else jnp.where(_step_mask(query_steps, key_steps), s, jnp.finfo(jnp.float32).min)


def _over_blocks(body, carry, xs):
    """lax.scan over the leading (block) axis; straight-line code up to FLASH_UNROLL blocks."""
    nb = jax.tree.leaves(xs)[0].shape[0]
    return jax.lax.scan(body, carry, xs, unroll=nb if nb <= FLASH_UNROLL else 1)


def _flash_forward(blocks, k, v, query_steps, key_steps):
    """-> (out (nb, B, heads, c, d), log-sum-exp (nb, B, heads, c) float32)."""
    def one(_, x):
        qb, qs = x
        s = _block_scores(qb, k, qs, key_steps)
        m = s.max(-1, keepdims=True)
        p = jnp.exp(s - m)
        l = p.sum(-1, keepdims=True)
        o = jnp.einsum('bhqk,bhkd->bhqd', p.astype(v.dtype), v, preferred_element_type=jnp.float32) / l
        return None, (o.astype(qb.dtype), (m + jnp.log(l))[..., 0])
    return _over_blocks(one, None, (blocks, query_steps))[1]


@jax.custom_vjp
def _flash(blocks, k, v, query_steps, key_steps):
    """Attention of query blocks (nb, B, heads, c, d), scale applied, on keys/values (B, heads,
    Nk, d) -> (nb, B, heads, c, d)."""
    return _flash_forward(blocks, k, v, query_steps, key_steps)[0]


def _flash_fwd(blocks, k, v, query_steps, key_steps):
    out, lse = _flash_forward(blocks, k, v, query_steps, key_steps)
    return out, (blocks, k, v, query_steps, key_steps, out, lse)


def _flash_bwd(residuals, d_out):
    """Over key blocks (of the query block size): their probabilities again from the scores and
    the saved log-sum-exp, dk and dv for the block, dq accumulated in float32. (Key blocks outside
    keep the dk / dv products in the layout the CPU matmul kernels take: 10 % faster than over
    query blocks at 1232-1568 tokens.)"""
    blocks, k, v, query_steps, key_steps, out, lse = residuals
    nb, b, h, c, d = blocks.shape

    def whole(x):  # (nb, B, heads, c, ...) -> (B, heads, nb * c, ...)
        return jnp.moveaxis(x, 0, 2).reshape(b, h, nb * c, *x.shape[4:])
    q, do, lse = whole(blocks), whole(d_out), whole(lse)
    delta = jnp.sum(do.astype(jnp.float32) * whole(out).astype(jnp.float32), -1)  # (B, heads, Nq)
    k_blocks, k_steps = _query_blocks(k, key_steps, c)  # zero-padded keys: no dq contribution
    v_blocks = _query_blocks(v, None, c)[0]
    q_steps = None if query_steps is None else query_steps.reshape(-1)

    def one(dq, x):
        kb, vb, ks = x
        s = jnp.einsum('bhkd,bhqd->bhkq', kb, q, preferred_element_type=jnp.float32)  # scores, keys first
        if key_steps is not None:
            s = jnp.where(_step_mask(q_steps, ks)[0, 0].T, s, jnp.finfo(jnp.float32).min)
        p = jnp.exp(s - lse[:, :, None, :])
        dv = jnp.einsum('bhkq,bhqd->bhkd', p.astype(do.dtype), do, preferred_element_type=jnp.float32)
        dp = jnp.einsum('bhkd,bhqd->bhkq', vb, do, preferred_element_type=jnp.float32)
        ds = (p * (dp - delta[:, :, None, :])).astype(q.dtype)
        dk = jnp.einsum('bhkq,bhqd->bhkd', ds, q, preferred_element_type=jnp.float32)
        dq = dq + jnp.einsum('bhkq,bhkd->bhqd', ds, kb, preferred_element_type=jnp.float32)
        return dq, (dk.astype(k.dtype), dv.astype(v.dtype))
    dq, (dk, dv) = _over_blocks(one, jnp.zeros(q.shape, jnp.float32), (k_blocks, v_blocks, k_steps))
    n_k = k.shape[2]
    dq = jnp.moveaxis(dq.astype(q.dtype).reshape(b, h, nb, c, d), 2, 0)
    return dq, whole(dk)[:, :, :n_k], whole(dv)[:, :, :n_k], None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _pallas_attention(q, k, v):
    """The Pallas TPU flash kernel on (B, N, heads, head_dim) inputs of any token counts."""
    from jax.experimental.pallas.ops.tpu import flash_attention as fa
    nq, nk, b = q.shape[1], k.shape[1], PALLAS_BLOCK

    def padded(x, n):  # (B, N, h, d) -> (B, h, N + pad, d)
        return jnp.pad(x, ((0, 0), (0, -n % b), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    def segments(n):  # real tokens 1, padding 0: a real query never sees a padded key
        ids = (jnp.arange(n + -n % b) < n).astype(jnp.int32)
        return jnp.broadcast_to(ids, (q.shape[0], ids.shape[0]))

    sizes = fa.BlockSizes(block_q=b, block_k_major=b, block_k=b, block_b=1, block_q_major_dkv=b,
                          block_k_major_dkv=b, block_k_dkv=b, block_q_dkv=b, block_k_major_dq=b, block_k_dq=b,
                          block_q_dq=b)

    def kernel(q, k, v):
        return fa.flash_attention(padded(q, nq), padded(k, nk), padded(v, nk),
                                  segment_ids=fa.SegmentIds(segments(nq), segments(nk)),
                                  sm_scale=q.shape[-1] ** -0.5, block_sizes=sizes).transpose(0, 2, 1, 3)[:, :nq]
    if jax.default_backend() == 'tpu':
        return kernel(q, k, v)
    if jax.default_backend() != 'cpu':
        raise ValueError(f"attention_impl 'pallas' is the TPU kernel: on {jax.default_backend()} use 'cudnn' or 'xla'")
    return _tpu_interpreted(kernel)(q, k, v)


def _tpu_interpreted(fn):
    """fn (a Pallas TPU kernel call) run in TPU interpret mode, forward and backward (the backward
    recomputes the forward under the same mode): the TPU kernel checked on CPU."""
    from jax.experimental.pallas import tpu as pltpu

    @jax.custom_vjp
    def run(*args):
        with pltpu.force_tpu_interpret_mode():
            return fn(*args)

    def backward(args, grad):
        with pltpu.force_tpu_interpret_mode():
            return jax.vjp(fn, *args)[1](grad)
    run.defvjp(lambda *args: (run(*args), args), backward)
    return run


class Attention(nnx.Module):
    """Multi-head self-attention with fused qkv (torch layout), optional 3-D RoPE."""

    def __init__(self, dim, num_heads, *, rope_form=None, query_chunk=0, impl='auto', dtype=None,
                 param_dtype=jnp.float32, rngs):
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f'attention_impl {impl!r}: choose one of {ATTENTION_IMPLS}')
        self.num_heads = num_heads
        self.rope_form = rope_form
        self.query_chunk, self.impl = query_chunk, impl
        self.qkv = _linear(dim, 3 * dim, dtype, param_dtype, rngs)
        self.proj = _linear(dim, dim, dtype, param_dtype, rngs)

    def __call__(self, x, coords=None, steps=None):
        """x (B, N, D), coords (B, N, 3) token (t, h, w) for RoPE, steps (N,) int for block-causal
        attention (see `attention`) -> (B, N, D)."""
        b, n, d = x.shape
        q, k, v = jnp.moveaxis(self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads), 2, 0)
        if self.rope_form is not None:
            q, k = apply_rope_3d(q, coords, self.rope_form), apply_rope_3d(k, coords, self.rope_form)
        out = attention(q, k, v, self.query_chunk, steps, self.impl)  # (B, N, heads, head_dim)
        return self.proj(out.reshape(b, n, d))


class Mlp(nnx.Module):
    def __init__(self, dim, hidden, *, dtype=None, param_dtype=jnp.float32, rngs):
        self.fc1 = _linear(dim, hidden, dtype, param_dtype, rngs)
        self.fc2 = _linear(hidden, dim, dtype, param_dtype, rngs)

    def __call__(self, x):
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(LN(x)); x + mlp(LN(x)). LayerNorm eps 1e-6 (the
    encoders and predictors; the attentive probes use torch's default 1e-5)."""

    def __init__(self, dim, num_heads, mlp_ratio, *, rope_form=None, query_chunk=0, attention_impl='auto',
                 norm_eps=1e-6, dtype=None, param_dtype=jnp.float32, rngs):
        self.norm1 = _layer_norm(dim, dtype, param_dtype, rngs, norm_eps)
        self.attn = Attention(dim, num_heads, rope_form=rope_form, query_chunk=query_chunk, impl=attention_impl,
                              dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm2 = _layer_norm(dim, dtype, param_dtype, rngs, norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x, coords=None, steps=None):
        x = x + self.attn(self.norm1(x), coords, steps)
        return x + self.mlp(self.norm2(x))


def make_blocks(depth, dim, num_heads, mlp_ratio, *, scan, rescale_init, rope_form, dtype, param_dtype, rngs,
                query_chunk=0, attention_impl='auto', norm_eps=1e-6):
    """depth Blocks, either an nnx.List or ONE Block whose params carry a leading depth axis
    (for `run_blocks(scan=True)`). Both layouts hold identical values for the same rngs.
    rescale_init divides attn.proj and mlp.fc2 of layer i by sqrt(2 (i + 1)) (V-JEPA 2)."""
    blocks = []
    for i in range(depth):
        blk = Block(dim, num_heads, mlp_ratio, rope_form=rope_form, query_chunk=query_chunk,
                    attention_impl=attention_impl, norm_eps=norm_eps,
                    dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if rescale_init:
            for lin in (blk.attn.proj, blk.mlp.fc2):
                lin.kernel.set_value(lin.kernel[...] / math.sqrt(2.0 * (i + 1)))
        blocks.append(blk)
    if not scan:
        return nnx.List(blocks)
    graphdef, first = nnx.split(blocks[0])
    rest = [nnx.split(b)[1] for b in blocks[1:]]
    return nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs), first, *rest))


def run_blocks(blocks, x, coords, *, scan: bool, remat_policy: str, steps=None):
    """Apply blocks (from make_blocks) to x (B, N, D); each block rematerialised by policy.
    steps: optional (N,) int per-token time step for block-causal attention (see `attention`)."""
    if remat_policy not in REMAT_POLICIES:
        raise ValueError(f'remat_policy {remat_policy!r}: choose one of {sorted(REMAT_POLICIES)}')

    def layer(graphdef):
        def apply(state, h):
            return nnx.merge(graphdef, state)(h, coords, steps)
        if remat_policy == 'none':
            return apply
        return jax.checkpoint(apply, policy=REMAT_POLICIES[remat_policy])

    if scan:
        graphdef, stacked = nnx.split(blocks)
        apply = layer(graphdef)
        x, _ = jax.lax.scan(lambda h, s: (apply(s, h), None), x, stacked)
        return x
    for blk in blocks:
        graphdef, state = nnx.split(blk)
        x = layer(graphdef)(state, x)
    return x


def unstack_blocks(tree: dict, key: str = 'blocks') -> dict:
    """Pure-dict params with scanned (stacked) blocks -> per-layer {key: {0: ..., 1: ...}}."""
    stacked = tree[key]
    depth = jax.tree.leaves(stacked)[0].shape[0]
    out = dict(tree)
    out[key] = {i: jax.tree.map(lambda a: a[i], stacked) for i in range(depth)}
    return out


def stack_blocks(tree: dict, key: str = 'blocks') -> dict:
    """Inverse of unstack_blocks."""
    layers = tree[key]
    out = dict(tree)
    out[key] = jax.tree.map(lambda *xs: jnp.stack(xs), *[layers[i] for i in sorted(layers)])
    return out


# ----------------------------------------------------------------------------------------
# The encoder
# ----------------------------------------------------------------------------------------
class PatchEmbed(nnx.Module):
    """Non-overlapping tubelet (t, p, p) or patch (p, p) embedding; the kernel keeps the
    conv layout (t, p, p, C, D) so it maps one-to-one onto the original's Conv3d."""

    def __init__(self, patch_size, tubelet_size, in_chans, dim, *, video, dtype=None, param_dtype=jnp.float32, rngs):
        self.patch = (tubelet_size, patch_size, patch_size) if video else (patch_size, patch_size)
        self.dtype = dtype
        self.kernel = nnx.Param(trunc_normal_init()(rngs.params(), (*self.patch, in_chans, dim), param_dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))

    def grid(self, shape: Sequence[int]) -> tuple:
        """Spatial(-temporal) input shape (T, H, W) or (H, W) -> token grid."""
        for n, p in zip(shape, self.patch):
            if n % p:
                raise ValueError(f'input size {tuple(shape)} is not divisible by the patch/tubelet {self.patch}')
        return tuple(n // p for n, p in zip(shape, self.patch))

    def __call__(self, x):
        """x (B, *S, C) -> (B, N, D) with N = prod(grid(S))."""
        b, c = x.shape[0], x.shape[-1]
        grid = self.grid(x.shape[1:-1])
        split = [b]
        for g, p in zip(grid, self.patch):
            split += [g, p]
        x = x.reshape(*split, c)
        nd = len(grid)
        x = x.transpose(0, *range(1, 2 * nd, 2), *range(2, 2 * nd + 1, 2), 2 * nd + 1)
        x = x.reshape(b, int(np.prod(grid)), -1)
        kernel = self.kernel[...].reshape(-1, self.kernel.shape[-1])
        dtype = self.dtype or x.dtype
        return (x.astype(dtype) @ kernel.astype(dtype)) + self.bias[...].astype(dtype)


class VisionTransformer(nnx.Module):
    """V-JEPA video ViT. Position: fixed 3-D sin-cos ('sincos', V-JEPA 1) or 3-D RoPE
    ('rope', V-JEPA 2). num_frames == 1 selects image mode (2-D patches and table)."""

    def __init__(self, *, img_size=224, num_frames=16, patch_size=16, tubelet_size=2, in_chans=3,
                 embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, pos_embed='sincos', rope_form='tiled',
                 uniform_power=True, rescale_init=False, scan_layers=False, remat_policy='none',
                 attention_query_chunk=0, attention_impl='auto', dtype=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if pos_embed not in ('sincos', 'rope'):
            raise ValueError(f"pos_embed {pos_embed!r}: use 'sincos' (V-JEPA 1) or 'rope' (V-JEPA 2)")
        self.video = num_frames > 1
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.pos_embed, self.rope_form = pos_embed, rope_form
        self.uniform_power = uniform_power
        self.scan_layers, self.remat_policy = scan_layers, remat_policy
        self.patch_embed = PatchEmbed(patch_size, tubelet_size, in_chans, embed_dim, video=self.video,
                                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_shape = (num_frames, img_size, img_size) if self.video else (img_size, img_size)
        self.grid = self.patch_embed.grid(self.input_shape)
        self.num_patches = int(np.prod(self.grid))
        self.blocks = make_blocks(depth, embed_dim, num_heads, mlp_ratio, scan=scan_layers,
                                  rescale_init=rescale_init, rope_form=rope_form if pos_embed == 'rope' else None,
                                  query_chunk=attention_query_chunk, attention_impl=attention_impl,
                                  dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm = _layer_norm(embed_dim, dtype, param_dtype, rngs)

    def pos_table(self, grid: Sequence[int]) -> np.ndarray:
        """The fixed (N, D) sin-cos table for a token grid, interpolated from the built size."""
        return interpolate_table(sincos_table(self.embed_dim, self.grid, self.uniform_power), self.grid, grid)

    def embed(self, x):
        """Clip (B, *S, C) -> all tokens (B, N, D) with sin-cos positions added, and the grid."""
        tokens = self.patch_embed(x)
        grid = self.patch_embed.grid(x.shape[1:-1])
        if self.pos_embed == 'sincos':
            tokens = tokens + jnp.asarray(self.pos_table(grid), tokens.dtype)
        return tokens, grid

    def encode(self, tokens, token_idx, grid):
        """Run the blocks and final norm on tokens (B, K, D) that sit at token_idx (B, K)."""
        coords = token_coords(token_idx, grid) if self.pos_embed == 'rope' else None
        x = run_blocks(self.blocks, tokens, coords, scan=self.scan_layers, remat_policy=self.remat_policy)
        return self.norm(x)

    def __call__(self, x, token_idx=None):
        """x (B, *S, C); token_idx (B, K) int or None (all tokens) -> (B, K, D)."""
        tokens, grid = self.embed(x)
        if token_idx is None:
            token_idx = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape[:2])
        else:
            tokens = jnp.take_along_axis(tokens, token_idx[..., None], axis=1)
        return self.encode(tokens, token_idx, grid)


def vit(variant: str, **kwargs) -> VisionTransformer:
    """Build a variant by name ('tiny' ... 'giant_xformers'); kwargs override or add fields."""
    if variant not in VIT_VARIANTS:
        raise ValueError(f'unknown ViT variant {variant!r}: choose one of {sorted(VIT_VARIANTS)}')
    return VisionTransformer(**{**VIT_VARIANTS[variant], **kwargs})
