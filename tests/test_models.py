"""Encoder and predictor: variants, parameter names and shapes, positions, RoPE, layouts."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import compiled_call, config
from vjepa_jax.models import factory
from vjepa_jax.models import torch_names
from vjepa_jax.models.predictor import Predictor
from vjepa_jax.models.vit import (apply_rope_3d, interpolate_table, rope_rotate, sincos_1d,
                                  sincos_2d, sincos_3d, token_coords, vit)


def abstract_params(cfg):
    n_masks = len(cfg.mask.generators)
    enc, pred = nnx.eval_shape(lambda: factory.build_models(cfg.model, n_masks, nnx.Rngs(0)))
    return nnx.to_pure_dict(nnx.state(enc)), nnx.to_pure_dict(nnx.state(pred))


def read_key_list(path, net):
    """{name: shape} of one network from a fixture key list."""
    out, section = {}, None
    for line in open(path):
        if line.startswith('#'):
            if "ck['encoder']" in line:
                section = 'encoder'
            elif "ck['predictor']" in line:
                section = 'predictor'
            elif 'opt.' in line:
                section = None
            continue
        parts = line.rstrip('\n').split('\t')
        if section == net and len(parts) == 3:
            out[torch_names.strip_wrappers(parts[0])] = tuple(int(d) for d in parts[1].strip('()').split(',') if d)
    return out


@pytest.mark.parametrize('name,encoder_params,predictor_params', [
    ('vitl16', 303_885_312, 22_685_056 - 1568 * 384),  # checkpoint counts minus the fixed tables
    ('vith16', 631_648_000, 22_685_056 - 1568 * 384 - 2 * 1024 * 384 - 1024 + 2 * 1280 * 384 + 1280),
])
def test_variant_parameter_counts(name, encoder_params, predictor_params):
    enc, pred = abstract_params(config(name))
    assert factory.count_params(enc) == encoder_params  # without the fixed position table
    assert factory.count_params(pred) == predictor_params  # ViT-H: only predictor_embed/proj widen


# The originals' vision_transformer.py (facebookresearch/jepa, vjepa2): width, depth, heads, MLP hidden
PUBLISHED = {'tiny': (192, 12, 3, 768), 'small': (384, 12, 6, 1536), 'base': (768, 12, 12, 3072),
             'large': (1024, 24, 16, 4096), 'huge': (1280, 32, 16, 5120), 'giant': (1408, 40, 16, 6144),
             'giant_xformers': (1408, 40, 22, 6144)}


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_published_variants_have_the_originals_shapes(name):
    width, depth, heads, hidden = PUBLISHED[name]
    enc = nnx.eval_shape(lambda: vit(name, img_size=32, num_frames=4, patch_size=16, rngs=nnx.Rngs(0)))
    p = nnx.to_pure_dict(nnx.state(enc))
    assert len(p['blocks']) == depth
    assert p['blocks'][0]['mlp']['fc1']['kernel'].shape == (width, hidden)
    assert p['blocks'][0]['attn']['qkv']['kernel'].shape == (width, 3 * width)
    assert enc.blocks[0].attn.num_heads == heads


def test_vitl16_names_and_shapes_match_released_checkpoint():
    enc, pred = abstract_params(config('vitl16'))
    for net, params in (('encoder', enc), ('predictor', pred)):
        ref = read_key_list('tests/fixtures/keys_vitl16_checkpoint.txt', net)
        ours = torch_names.torch_shapes(params)
        fixed = {k: v for k, v in ref.items() if k in torch_names.FIXED_BUFFERS}
        assert ours == {k: v for k, v in ref.items() if k not in fixed}, net
        assert fixed  # the position tables exist there and are computed here


def test_micro_names_and_shapes_match_fixture():
    from helpers import micro_models
    enc, pred = micro_models()
    for net, mod in (('encoder', enc), ('predictor', pred)):
        ref = read_key_list('tests/fixtures/vjepa1_micro/keys_vit_micro.txt', net)
        ours = torch_names.torch_shapes(nnx.to_pure_dict(nnx.state(mod)))
        assert ours == {k: v for k, v in ref.items() if k not in torch_names.FIXED_BUFFERS}


def test_from_torch_names_missing_and_unexpected():
    enc = vit('micro', img_size=32, num_frames=4, rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(enc))
    tensors = torch_names.to_torch(params)
    tensors['module.backbone.extra.weight'] = np.zeros(3)
    del tensors['norm.bias']
    with pytest.raises(ValueError, match=r"missing \['norm.bias'\], unexpected \['extra.weight'\]"):
        torch_names.from_torch(tensors, params)


def test_sincos_hand_computed():
    t = sincos_1d(4, np.array([0.0, 1.0]))
    np.testing.assert_allclose(t, [[0, 0, 1, 1], [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]])
    # uniform power: D=1024 -> 342 dims per axis, [t | h | w] truncated to 1024
    table = sincos_3d(1024, (8, 14, 14))
    assert table.shape == (1568, 1024)
    grid = table.reshape(8, 14, 14, 1024)
    np.testing.assert_allclose(grid[:, 0, 0, :342], sincos_1d(342, np.arange(8)), atol=1e-6)
    np.testing.assert_allclose(grid[0, :, 0, 342:684], sincos_1d(342, np.arange(14)), atol=1e-6)
    np.testing.assert_allclose(grid[0, 0, :, 684:], sincos_1d(342, np.arange(14))[:, :340], atol=1e-6)
    assert np.ptp(grid[:, :, 3, :342], axis=1).max() == 0  # t-part does not depend on h
    img = sincos_2d(8, (2, 3))
    np.testing.assert_allclose(img[4], np.concatenate([sincos_1d(4, np.array([1.0])), sincos_1d(4, np.array([1.0]))],
                                                      axis=1)[0], atol=1e-6)  # (h=1, w=1)


def test_interpolation_matches_torch_rules():
    ramp = np.arange(4, dtype=np.float32)[:, None]
    # torch linear, align_corners=False, 2 -> 4: [x0, .75x0 + .25x1, .25x0 + .75x1, x1]
    two = np.array([[0.0], [4.0]], np.float32)
    np.testing.assert_allclose(interpolate_table(two.reshape(2, 1), (2, 1, 1), (4, 1, 1))[:, 0], [0, 1, 3, 4])
    # bicubic, A = -0.75, 4 -> 8 along h: output row 3 reads source 1.25, weights
    # k(1.25), k(.25), k(.75), k(1.75) = -0.10546875, 0.87890625, 0.26171875, -0.03515625 (hand-computed)
    up = interpolate_table(np.repeat(ramp, 4, 0), (4, 4), (8, 8)).reshape(8, 8)
    np.testing.assert_allclose(up[3], 0.87890625 + 2 * 0.26171875 - 3 * 0.03515625, atol=1e-6)
    # row 0 reads source -0.25: indices (-2, -1, 0, 1) clamp to (0, 0, 0, 1), so only x1 = 1 counts
    np.testing.assert_allclose(up[0], -0.10546875, atol=1e-6)
    table = sincos_3d(24, (4, 4, 4))
    np.testing.assert_array_equal(interpolate_table(table, (4, 4, 4), (4, 4, 4)), table)


def _rope_reference(x, pos, form):
    """Loop version of RoPE on (n,) vectors."""
    n = len(x)
    out = np.zeros(n)
    for i in range(n // 2):
        fa, fb = (i, i) if form == 'interleaved' else ((2 * i) % (n // 2), (2 * i + 1) % (n // 2))
        wa, wb = 10000 ** (-fa / (n / 2)), 10000 ** (-fb / (n / 2))
        out[2 * i] = x[2 * i] * math.cos(pos * wa) - x[2 * i + 1] * math.sin(pos * wa)
        out[2 * i + 1] = x[2 * i + 1] * math.cos(pos * wb) + x[2 * i] * math.sin(pos * wb)
    return out


@pytest.mark.parametrize('form', ['interleaved', 'tiled'])
def test_rope_hand_computed(form):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 1, 1, 8)).astype(np.float32)
    got = rope_rotate(jnp.asarray(x), jnp.array([[3]]), form)
    np.testing.assert_allclose(got[0, 0, 0], _rope_reference(x[0, 0, 0], 3, form), atol=1e-5)
    # 3-D: head_dim 14 -> chunks of 4 for t, h, w, 2 dims untouched
    x = rng.normal(size=(1, 1, 1, 14)).astype(np.float32)
    coords = token_coords(jnp.array([[2 * 12 + 1 * 4 + 3]]), (5, 3, 4))  # (t, h, w) = (2, 1, 3)
    np.testing.assert_array_equal(coords[0, 0], [2, 1, 3])
    got = np.asarray(apply_rope_3d(jnp.asarray(x), coords, form))[0, 0, 0]
    for i, p in enumerate((2, 1, 3)):
        np.testing.assert_allclose(got[4 * i:4 * i + 4], _rope_reference(x[0, 0, 0, 4 * i:4 * i + 4], p, form),
                                   atol=1e-5)
    np.testing.assert_array_equal(got[12:], x[0, 0, 0, 12:])


def test_interleaved_rope_is_relative_tiled_is_not():
    rng = np.random.default_rng(1)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32) for _ in range(2))

    def score(form, a, b):
        return float((rope_rotate(q, jnp.array([[a]]), form) * rope_rotate(k, jnp.array([[b]]), form)).sum())
    assert abs(score('interleaved', 5, 2) - score('interleaved', 9, 6)) < 1e-4
    assert abs(score('tiled', 5, 2) - score('tiled', 9, 6)) > 1e-3


@pytest.fixture(scope='module')
def small_clip():
    return jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))


@pytest.mark.parametrize('pos_embed', ['sincos', 'rope'])
def test_token_subset_is_permutation_equivariant(pos_embed, small_clip):
    enc = vit('micro', img_size=32, num_frames=4, pos_embed=pos_embed, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(enc)
    n = int(np.prod(enc.grid))  # tokens: 2 x 2 x 2
    perm = jnp.stack([jax.random.permutation(jax.random.key(i), n) for i in range(2)])

    @jax.jit
    def full_and_subset(params, x, perm):
        enc = nnx.merge(graphdef, params)
        return enc(x), enc(x, perm)
    full, subset = full_and_subset(params, small_clip, perm)
    assert full.shape[1] == n
    np.testing.assert_allclose(subset, jnp.take_along_axis(full, perm[..., None], 1), atol=1e-5)


def test_scan_and_remat_equal_unrolled(small_clip):
    """Every remat policy, scanned or unrolled: the outputs and every gradient of the plain model."""
    from vjepa_jax.models.vit import REMAT_POLICIES, unstack_blocks
    outs, grads_all = [], []
    for scan, remat in [(False, 'none'), (True, 'none'), (True, 'full')] + [(False, p) for p in REMAT_POLICIES]:
        enc = vit('micro', img_size=32, num_frames=4, scan_layers=scan, remat_policy=remat, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(enc)

        @jax.jit
        def forward_and_grads(params, x):
            def total(p):
                out = nnx.merge(graphdef, p)(x)
                return jnp.sum(jnp.sin(out)), out
            return jax.grad(total, has_aux=True)(params)
        grads, out = forward_and_grads(params, small_clip)
        grads = nnx.to_pure_dict(grads)
        outs.append(out)
        grads_all.append(unstack_blocks(grads) if scan else grads)
    for o, g in zip(outs[1:], grads_all[1:]):
        np.testing.assert_allclose(o, outs[0], atol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g, grads_all[0])


def test_image_mode_and_other_sizes(small_clip):
    img = vit('micro', img_size=32, num_frames=1, rngs=nnx.Rngs(0))
    assert img.patch_embed.kernel.shape == (16, 16, 3, 96)
    assert compiled_call(img, small_clip[:, 0]).shape == (2, 4, 96)
    assert compiled_call(img, jnp.zeros((1, 48, 48, 3))).shape == (1, 9, 96)  # bicubic-interpolated table
    enc = vit('micro', img_size=32, num_frames=4, rngs=nnx.Rngs(0))
    assert compiled_call(enc, jnp.zeros((1, 8, 48, 48, 3))).shape == (1, 4 * 9, 96)  # trilinear-interpolated
    with pytest.raises(ValueError, match='not divisible'):
        enc(jnp.zeros((1, 4, 40, 40, 3)))


def test_vjepa2_rescale_init_and_mask_tokens():
    enc = vit('micro', img_size=32, num_frames=4, rescale_init=True, pos_embed='rope', rngs=nnx.Rngs(0))
    ref = vit('micro', img_size=32, num_frames=4, rngs=nnx.Rngs(0))
    for i in range(2):
        np.testing.assert_allclose(enc.blocks[i].mlp.fc2.kernel[...] * math.sqrt(2 * (i + 1)),
                                   ref.blocks[i].mlp.fc2.kernel[...], rtol=1e-6)
    pred = Predictor(grid=(2, 2, 2), embed_dim=96, predictor_embed_dim=48, depth=1, num_heads=3, rngs=nnx.Rngs(0))
    assert all(float(jnp.abs(t[...]).max()) == 0 for t in pred.mask_tokens)  # zero-initialised
    std = float(jnp.std(ref.blocks[0].attn.qkv.kernel[...]))
    assert abs(std - 0.02) < 0.002  # trunc_normal(0.02) with the absolute +-2 bounds is ~N(0, 0.02)


@pytest.mark.parametrize('nq, nk', [(50, 50), (3, 130)])  # self-attention, and few queries on many tokens
def test_pallas_flash_attention_equals_xla(nq, nk):
    """The Pallas TPU kernel (TPU interpret mode on CPU) pads tokens to 128 and masks the padding:
    outputs and gradients equal the XLA path's, so no padded token leaks into a real one."""
    from vjepa_jax.models.vit import attention
    keys = jax.random.split(jax.random.key(1), 3)
    q = jax.random.normal(keys[0], (2, nq, 2, 16))
    k, v = (jax.random.normal(key, (2, nk, 2, 16)) for key in keys[1:])

    @functools.partial(jax.jit, static_argnums=0)  # one compiled call each (interpret mode included)
    def out_and_grads(impl, q, k, v):
        fn = lambda q, k, v: jnp.sum(jnp.sin(attention(q, k, v, impl=impl)))  # noqa: E731
        return attention(q, k, v, impl=impl), jax.grad(fn, argnums=(0, 1, 2))(q, k, v)
    (out_p, grads_p), (out_x, grads_x) = out_and_grads('pallas', q, k, v), out_and_grads('xla', q, k, v)
    np.testing.assert_allclose(out_p, out_x, atol=2e-6)
    for g_p, g_x in zip(grads_p, grads_x):
        np.testing.assert_allclose(g_p, g_x, atol=2e-5)


def test_attention_impl_errors_name_the_choice():
    from vjepa_jax.models.vit import attention
    q = jnp.zeros((1, 4, 1, 8))
    with pytest.raises(ValueError, match="attention_impl 'blocked'"):
        attention(q, q, q, impl='blocked')
    with pytest.raises(ValueError, match='no block-causal path'):
        attention(q, q, q, steps=jnp.arange(4), impl='pallas')


def test_encoder_and_probe_equal_across_attention_impls():
    """The same init through 'xla' and 'flash' (the whole encoder and an attentive probe, jitted)."""
    from vjepa_jax.models.probe import AttentiveProbe
    x = jax.random.normal(jax.random.key(0), (1, 4, 32, 32, 3))
    tokens, logits = [], []
    for impl in ('xla', 'flash'):
        enc = vit('micro', img_size=32, num_frames=4, patch_size=16, tubelet_size=2, attention_impl=impl,
                  rngs=nnx.Rngs(0))
        probe = AttentiveProbe(embed_dim=96, num_heads=3, heads=(('linear', 5),), depth=2, attention_impl=impl,
                               rngs=nnx.Rngs(1))
        tokens.append(nnx.jit(lambda e, x: e(x))(enc, x))
        logits.append(nnx.jit(lambda p, t: p(t)['linear'])(probe, tokens[-1]))
    np.testing.assert_allclose(tokens[1], tokens[0], atol=1e-5)
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-5)


@pytest.mark.parametrize('impl', ['flash', 'xla'])
def test_query_chunked_attention_equals_full_attention(impl):
    """Every CPU path and block size (chunked and rematerialised, or the default blocks) gives
    the outputs and gradients of jax.nn.dot_product_attention on the whole sequence."""
    from vjepa_jax.models.vit import FLASH_BLOCK, attention
    q, k, v = jax.random.normal(jax.random.key(0), (3, 2, FLASH_BLOCK + 50, 3, 8))

    def loss(chunk, impl):
        return lambda q, k, v: jnp.sum(jnp.sin(attention(q, k, v, chunk, impl=impl)))

    @jax.jit  # the forms and their gradients, one compilation
    def forms(q, k, v):
        return [(attention(q, k, v, chunk, impl=i), jax.grad(loss(chunk, i), argnums=(0, 1, 2))(q, k, v))
                for chunk, i in ((16, impl), (0, impl), (0, 'xla'))]
    (out_chunk, grads_chunk), (out_default, grads_default), (out_full, grads_full) = forms(q, k, v)
    for out, grads in ((out_chunk, grads_chunk), (out_default, grads_default)):  # 178 = 11 x 16 + 2 padded
        np.testing.assert_allclose(out, out_full, atol=1e-6)
        for g, g_full in zip(grads, grads_full):
            np.testing.assert_allclose(g, g_full, atol=1e-5)
