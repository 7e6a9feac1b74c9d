"""Config and workdir checks that run before anything touches the workdir: each bad value is
one UsageError line naming the field, what it holds, the allowed values and the fix.

    validate.pretrain_config(config, workdir)   # vjepa_jax.train.train calls it first
"""
from __future__ import annotations

import os

from vjepa_jax.config import UsageError, get_field


def one_of(config, key: str, allowed) -> None:
    value = get_field(config, key)
    if value not in allowed:
        raise UsageError(f'--config.{key}={value!r} is not one of {sorted(allowed)}: pass one of them')


def at_least(config, key: str, low: int) -> None:
    value = get_field(config, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
        raise UsageError(f'--config.{key}={value!r}: must be a number >= {low}' + (' (0: off / the default)'
                                                                                  if low == 0 else ''))


def workdir(path: str) -> None:
    """A workdir is a folder or a path that does not exist yet."""
    if '://' not in path and os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f'--workdir={path} is a file: pass a folder (it is created when missing)')


def pretrain_config(config, workdir_path: str) -> None:
    """Every field a pretraining run reads that can be wrong in a way its code would meet late."""
    from vjepa_jax.models.factory import DTYPES
    from vjepa_jax.optim import LR_SCHEDULES
    from vjepa_jax.models.vit import ATTENTION_IMPLS, REMAT_POLICIES, VIT_VARIANTS
    workdir(workdir_path)
    one_of(config, 'model.variant', VIT_VARIANTS)
    one_of(config, 'model.dtype', DTYPES)
    one_of(config, 'model.pos_embed', ('sincos', 'rope'))
    one_of(config, 'model.rope_form', ('tiled', 'interleaved'))
    one_of(config, 'model.remat_policy', REMAT_POLICIES)
    one_of(config, 'model.attention_impl', ATTENTION_IMPLS)
    one_of(config, 'optim.lr_schedule', LR_SCHEDULES)
    for key in ('model.img_size', 'model.num_frames', 'model.patch_size', 'model.tubelet_size', 'model.in_chans',
                'model.pred_depth', 'model.pred_embed_dim', 'data.global_batch_size', 'data.frame_step',
                'train.log_every', 'checkpoint.every_steps', 'optim.ipe', 'optim.epochs'):
        at_least(config, key, 1)
    for key in ('train.num_steps', 'checkpoint.keep_last', 'checkpoint.keep_every', 'data.num_workers',
                'model.attention_query_chunk', 'model.num_mask_tokens', 'model.pred_num_heads'):
        at_least(config, key, 0)
    m = config.model
    if m.img_size % m.patch_size:
        raise UsageError(f'--config.model.img_size={m.img_size} is not a multiple of model.patch_size={m.patch_size}: '
                         f'pass an img_size divisible by it')
    if m.num_frames % m.tubelet_size:
        raise UsageError(f'--config.model.num_frames={m.num_frames} is not a multiple of model.tubelet_size='
                         f'{m.tubelet_size}: pass a num_frames divisible by it')
