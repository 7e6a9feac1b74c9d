"""Config and workdir checks that run before anything touches the workdir: each bad value is
one UsageError line naming the field, what it holds, the allowed values and the fix.

    validate.pretrain_config(config, workdir)      # vjepa_jax.train.train calls it first
    validate.world_model_config(config, workdir)   # world_model.trainer.train, world_model.measure
    validate.eval_config(config, workdir)          # evals.probe_eval.run
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


def local_workdir(path: str, tool: str) -> None:
    """The evaluators and the world-model measurement write plain local files (results, pictures)."""
    workdir(path)
    if '://' in path:
        raise UsageError(f'--workdir={path}: {tool} writes its results as local files; pass a local --workdir '
                         f'(and copy it up afterwards)')


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


def world_model_config(config, workdir_path: str) -> None:
    """The AC predictor's training (world_model/trainer.py) and, when the config plans, the planner's fields."""
    from vjepa_jax.models.factory import DTYPES
    from vjepa_jax.models.vit import ATTENTION_IMPLS, REMAT_POLICIES
    from vjepa_jax.optim import LR_SCHEDULES
    from vjepa_jax.world_model.objective import ROLLOUT_STATES
    workdir(workdir_path)
    one_of(config, 'predictor.dtype', DTYPES)
    one_of(config, 'predictor.remat_policy', REMAT_POLICIES)
    one_of(config, 'predictor.attention_impl', ATTENTION_IMPLS)
    one_of(config, 'predictor.rope_form', ('tiled', 'interleaved'))
    one_of(config, 'optim.lr_schedule', LR_SCHEDULES)
    one_of(config, 'loss.rollout_states', ROLLOUT_STATES)
    for key in ('predictor.embed_dim', 'predictor.depth', 'predictor.num_heads', 'predictor.action_dim',
                'loss.auto_steps', 'data.frame_step', 'data.global_batch_size', 'train.log_every',
                'train.steps_per_call',
                'checkpoint.every_steps', 'optim.ipe', 'optim.epochs'):
        at_least(config, key, 1)
    for key in ('train.num_steps', 'checkpoint.keep_last', 'data.val_episodes', 'data.num_workers',
                'predictor.state_fourier'):
        at_least(config, key, 0)
    at_least(config, 'data.num_frames', 2)
    if config.predictor.embed_dim % config.predictor.num_heads:
        raise UsageError(f'--config.predictor.embed_dim={config.predictor.embed_dim} is not a multiple of '
                         f'predictor.num_heads={config.predictor.num_heads}: pass a multiple of it')
    if config.loss.get('readout_weight', 0.0) < 0:
        raise UsageError(f'--config.loss.readout_weight={config.loss.readout_weight} is negative: pass 0 (V-JEPA '
                         f'2-AC) or a positive weight')
    if wants_readout(config) and not config.data.cache_tokens:
        raise UsageError('the action read-out (loss.readout_weight > 0, loss.rollout_states=readout, plan.energy='
                         'readout or plan.imagined_states=readout) is fitted on cached tokens: pass '
                         '--config.data.cache_tokens=true or drop it')
    if 'env' in config and not 0.0 <= config.env.get('attraction', 0.0) <= 1.0:
        raise UsageError(f'--config.env.attraction={config.env.attraction}: must lie in [0, 1] (0: a plain random walk)')
    if 'plan' in config:
        plan_config(config)


def checkpoint_layout(meta: dict, config, step: int, section: str, fields: dict) -> None:
    """One-line error when a workdir's checkpoint (its meta) was made with another layout: fields
    maps the config.<section> fields that decide the parameters' shapes to their value in a saved
    config without them (None: not checked then). A mismatch is not damage: nothing is moved."""
    saved = meta.get('config', {}).get(section, {})
    held = {k: saved.get(k, default) for k, default in fields.items()}
    diff = [f'--config.{section}.{k}={v} (it has {v!r}, the config {config[section][k]!r})'
            for k, v in held.items() if v is not None and v != config[section][k]]
    if diff:
        raise UsageError(f'checkpoint {step} was made with another {section} layout: pass {"; ".join(diff)}, or '
                         f'use a new workdir')


def wants_readout(config) -> bool:
    """Whether the AC trainer fits the action read-out (world_model/readout.py)."""
    plan = config.get('plan', {})
    return (config.loss.get('readout_weight', 0.0) > 0 or plan.get('energy') == 'readout'
            or plan.get('imagined_states') == 'readout' or config.loss.get('rollout_states') == 'readout')


def plan_config(config) -> None:
    """The planner's fields (world_model/measure.py, mpc.py)."""
    from vjepa_jax.world_model.mpc import IMAGINED_STATES
    from vjepa_jax.world_model.objective import ENERGIES
    one_of(config, 'plan.energy', ENERGIES)
    one_of(config, 'plan.energy_steps', ('final', 'all'))
    one_of(config, 'plan.imagined_states', IMAGINED_STATES)
    if not 0 <= get_field(config, 'plan.replan_every') <= config.data.frame_step:
        raise UsageError(f'--config.plan.replan_every={config.plan.replan_every}: must lie in [0, data.frame_step='
                         f'{config.data.frame_step}] (env steps run per plan; 0: one model action)')
    for key in ('plan.horizon', 'plan.model_steps', 'plan.cem.samples', 'plan.cem.elites', 'plan.cem.iterations',
                'plan.gradient.restarts', 'plan.gradient.steps'):
        at_least(config, key, 1)
    at_least(config, 'plan.goals', 0)
    cem = config.plan.cem
    if cem.elites > cem.samples:
        raise UsageError(f'--config.plan.cem.elites={cem.elites} is more than plan.cem.samples={cem.samples}: '
                         f'pass at most that many elites')


def eval_config(config, workdir_path: str) -> None:
    """Frozen-feature classification (evals/probe_eval.py)."""
    from vjepa_jax.models.probe import STYLES
    from vjepa_jax.models.vit import ATTENTION_IMPLS
    local_workdir(workdir_path, 'probe_eval')
    one_of(config, 'encoder.which', ('target_encoder', 'encoder'))
    one_of(config, 'probe.style', STYLES)
    one_of(config, 'probe.attention_impl', ATTENTION_IMPLS)
    for key in ('probe.depth', 'probe.num_heads', 'data.num_classes', 'data.frames_per_clip', 'data.frame_step',
                'data.num_segments', 'data.num_views', 'data.resolution', 'optim.epochs', 'optim.batch_size',
                'log_every'):
        at_least(config, key, 1)
    at_least(config, 'data.num_workers', 0)
    o = config.optim
    if not o.lr or not o.weight_decay:
        raise UsageError(f'--config.optim.lr={tuple(o.lr)} / optim.weight_decay={tuple(o.weight_decay)}: '
                         f'give at least one value each (every lr x wd pair trains a probe head)')
