"""The one table between this project's parameter names and the original PyTorch names.

JAX params are nested pure dicts (nnx.to_pure_dict(nnx.state(module))) of an encoder, a predictor,
an action-conditioned predictor or an attentive probe,
with unstacked blocks ({'blocks': {0: ..., 1: ...}}; see vit.unstack_blocks). Torch names
are those of the released checkpoints without the 'module.backbone.' wrapper prefix.
"""
from __future__ import annotations

import re

import numpy as np

WRAPPER_PREFIXES = ('module.', 'backbone.')

# (JAX dotted-path regex, torch name template, how the JAX array becomes the torch tensor)
NAME_TABLE = (
    (r'patch_embed\.kernel', 'patch_embed.proj.weight', 'conv'),
    (r'patch_embed\.bias', 'patch_embed.proj.bias', 'same'),
    (r'(.*norm[12]?|predictor_norm)\.scale', r'\1.weight', 'same'),
    (r'(.*)\.kernel', r'\1.weight', 'linear'),
    (r'(.*)', r'\1', 'same'),  # biases, LayerNorm biases, mask_tokens.i
)
FIXED_BUFFERS = ('pos_embed', 'predictor_pos_embed')  # computed, never trained

# the original modules' registration order (state dicts and optimiser indices follow it):
# encoder, mask-token predictor, action-conditioned predictor, attentive probe
SECTIONS = ('pos_embed', 'patch_embed', 'blocks', 'norm', 'predictor_pos_embed', 'predictor_embed', 'action_encoder',
            'state_encoder', 'extrinsics_encoder', 'mask_tokens', 'predictor_blocks', 'predictor_norm',
            'predictor_proj', 'pooler', 'verb_classifier', 'noun_classifier', 'action_classifier', 'linear')
BLOCK_ORDER = ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight', 'attn.proj.bias',
               'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
POOLER_ORDER = ('query_tokens', 'cross_attention_block', 'blocks')
CROSS_BLOCK_ORDER = ('norm1', 'xattn.q', 'xattn.kv', 'xattn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2')


def original_order(torch_name: str) -> tuple:
    """Sort key putting torch names in the original's state-dict order."""
    parts = torch_name.split('.')
    section = SECTIONS.index(parts[0])
    if parts[0] in ('blocks', 'predictor_blocks'):
        return section, int(parts[1]), BLOCK_ORDER.index('.'.join(parts[2:])), 0
    if parts[0] == 'mask_tokens':
        return section, int(parts[1]), 0, 0
    if parts[0] == 'pooler':
        part = POOLER_ORDER.index(parts[1])
        if parts[1] == 'blocks':
            return section, part, int(parts[2]), BLOCK_ORDER.index('.'.join(parts[3:]))
        if parts[1] == 'cross_attention_block':
            return section, part, CROSS_BLOCK_ORDER.index('.'.join(parts[2:-1])), int(parts[-1] == 'bias')
        return section, part, 0, 0
    return section, 0, 0, int(parts[-1] == 'bias')


def _flatten(tree, prefix=''):
    out = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def _to_torch_array(x, how):
    x = np.asarray(x)
    if how == 'linear':
        return x.T
    if how == 'conv':  # (t, p, p, C, D) -> (D, C, t, p, p); image (p, p, C, D) -> (D, C, p, p)
        return x.transpose(x.ndim - 1, x.ndim - 2, *range(x.ndim - 2))
    return x


def _from_torch_array(x, how):
    x = np.asarray(x)
    if how == 'linear':
        return x.T
    if how == 'conv':
        return x.transpose(*range(2, x.ndim), 1, 0)
    return x


def torch_name(jax_name: str) -> tuple[str, str]:
    """'blocks.0.attn.qkv.kernel' -> ('blocks.0.attn.qkv.weight', 'linear')."""
    for pattern, template, how in NAME_TABLE:
        if re.fullmatch(pattern, jax_name):
            return re.sub(pattern, template, jax_name), how
    raise KeyError(jax_name)


def strip_wrappers(name: str) -> str:
    """Drop the DDP / multi-mask wrapper prefixes ('module.backbone.x' -> 'x')."""
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def to_torch(params: dict) -> dict[str, np.ndarray]:
    """JAX pure-dict params -> {torch name: array in torch layout}, in the original's order."""
    out = {}
    for name, value in _flatten(params).items():
        tname, how = torch_name(name)
        out[tname] = _to_torch_array(value, how)
    return dict(sorted(out.items(), key=lambda item: original_order(item[0])))


def from_torch(tensors: dict, template: dict) -> dict:
    """{torch name (wrappers allowed): array} -> pure dict shaped like template.

    Raises ValueError listing every missing and unexpected name; fixed position buffers
    are accepted and ignored (they are recomputed)."""
    tensors = {strip_wrappers(k): v for k, v in tensors.items()}
    flat = _flatten(template)
    wanted = {torch_name(n)[0]: n for n in flat}
    missing = sorted(set(wanted) - set(tensors))
    unexpected = sorted(set(tensors) - set(wanted) - set(FIXED_BUFFERS))
    if missing or unexpected:
        raise ValueError(f'checkpoint does not match the model: missing {missing}, unexpected {unexpected}')
    values = {}
    for tname, jname in wanted.items():
        value = _from_torch_array(tensors[tname], torch_name(jname)[1])
        if value.shape != np.shape(flat[jname]):
            raise ValueError(f'{tname}: checkpoint shape {value.shape} != model shape {np.shape(flat[jname])}')
        values[jname] = value

    def build(tree, prefix=''):
        return {k: build(v, f'{prefix}{k}.') if isinstance(v, dict) else values[f'{prefix}{k}']
                for k, v in tree.items()}
    return build(template)


def torch_shapes(params: dict) -> dict[str, tuple]:
    """{torch name: torch shape} from params or their shapes (jax.eval_shape output)."""
    out = {}
    for name, value in _flatten(params).items():
        tname, how = torch_name(name)
        out[tname] = _to_torch_array(np.broadcast_to(np.float32(0), np.shape(value)), how).shape
    return out
