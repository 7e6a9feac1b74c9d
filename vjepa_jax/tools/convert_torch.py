"""Convert the original's PyTorch checkpoints to this project's orbax checkpoints, and back.

  python -m vjepa_jax.tools.convert_torch --checkpoint=vitl16.pth.tar --config=configs/pretrain/vitl16.py \\
      --output=DIR [--optimizer]        # DIR/checkpoints/<step>/: `vjepa_jax.main --workdir=DIR` resumes there
  python -m vjepa_jax.tools.convert_torch --to_torch --workdir=DIR --config=... --output=out.pth.tar
  python -m vjepa_jax.tools.convert_torch --checkpoint=k400-probe.pth.tar --output=DIR   # attentive probe
  python -m vjepa_jax.tools.convert_torch --checkpoint=vjepa2-ac-vitg.pt --config=configs/pretrain/vjepa2_vitg16.py \
      --output=DIR                      # V-JEPA 2-AC: encoder + action-conditioned predictor

No PyTorch needed (torch_io reads the zip of pickled tensors with a restricted unpickler).
Names go through models/torch_names.py; any missing or unexpected tensor stops the
conversion with the full list. The optimiser's AdamW moments are mapped back to names by
the original's parameter-group order: weights (not 'bias', not 1-D) of the encoder, then of
the predictor, then the biases / 1-D tensors of each, each in state-dict order.
Probes and the AC predictor are written as params checkpoints (vjepa_jax/pretrained.py loads
them); their shapes (width, depth, heads' classes, action size) are read from the file, and
only what a file cannot tell (attention heads, extrinsics) comes from flags.
"""
from __future__ import annotations

import copy
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from etils import epath

from vjepa_jax import config as config_lib
from vjepa_jax import torch_io, train_state
from vjepa_jax.data.stream import DataStream
from vjepa_jax.models import factory, torch_names
from vjepa_jax.models.vit import stack_blocks, unstack_blocks

NETS = ('encoder', 'predictor', 'target_encoder')
BLOCKS = {'encoder': 'blocks', 'target_encoder': 'blocks', 'predictor': 'predictor_blocks'}
TORCH_PREFIX = 'module.backbone.'  # how the original's save_checkpoint names every tensor
_CONFIG = None  # the --config flag, when run as a tool


# ----------------------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------------------
def unscanned(config):
    """The same config with per-layer blocks (the layout torch names map onto)."""
    config = copy.deepcopy(config)
    config.model.scan_layers = False
    return config


def templates(config) -> dict:
    """{'encoder', 'predictor'}: pure dicts of ShapeDtypeStructs in the per-layer layout."""
    from flax import nnx
    n_masks = factory.num_mask_tokens(config)
    enc, pred = nnx.eval_shape(lambda: factory.build_models(unscanned(config).model, n_masks, nnx.Rngs(0)))
    return {'encoder': nnx.to_pure_dict(nnx.state(enc)), 'predictor': nnx.to_pure_dict(nnx.state(pred))}


def to_layout(tree: dict, net: str, config) -> dict:
    return stack_blocks(tree, BLOCKS[net]) if config.model.scan_layers else tree


def from_layout(tree: dict, net: str, config) -> dict:
    return unstack_blocks(tree, BLOCKS[net]) if config.model.scan_layers else tree


def template_net(net: str) -> str:
    return 'encoder' if net == 'target_encoder' else net


# ----------------------------------------------------------------------------------------
# torch -> JAX
# ----------------------------------------------------------------------------------------
def params_from_torch(checkpoint: dict, config, nets=NETS) -> dict:
    """{net: pure-dict params in config's layout} for the nets present in the checkpoint."""
    tmpl = templates(config)
    out = {}
    for net in nets:
        if net not in checkpoint:
            raise KeyError(f'the checkpoint has no {net!r} (it has {sorted(checkpoint)})')
        try:
            tree = torch_names.from_torch(dict(checkpoint[net]), tmpl[template_net(net)])
        except ValueError as e:
            raise ValueError(f'{net}: {e}') from None
        out[net] = to_layout(tree, net, config)
    return out


def optimizer_order(checkpoint: dict) -> list:
    """[(net, torch name)] in the order of the original optimiser's parameter indices."""
    order = []
    for weights in (True, False):
        for net in ('encoder', 'predictor'):
            for name, value in checkpoint[net].items():
                is_weight = 'bias' not in name and np.ndim(value) != 1
                if is_weight == weights:
                    order.append((net, torch_names.strip_wrappers(name)))
    return order


def adam_from_torch(checkpoint: dict, config) -> tuple:
    """-> (mu, nu) as {'encoder', 'predictor'} pure dicts, and the step count. Parameters the
    original never updated (fixed position tables, unused mask tokens) have zero moments."""
    opt = checkpoint['opt']
    order = optimizer_order(checkpoint)
    n_indexed = sum(len(g['params']) for g in opt['param_groups'])
    if n_indexed != len(order):
        raise ValueError(f'optimiser state indexes {n_indexed} parameters but the networks have {len(order)}: '
                         f'not a V-JEPA pretraining checkpoint?')
    moments = {k: {'encoder': {}, 'predictor': {}} for k in ('exp_avg', 'exp_avg_sq')}
    steps = []
    for index, entry in opt['state'].items():
        net, name = order[int(index)]
        for k in moments:
            moments[k][net][name] = entry[k]
        steps.append(float(np.asarray(entry['step'])))
    tmpl = templates(config)
    out = []
    for k in ('exp_avg', 'exp_avg_sq'):
        trees = {}
        for net in ('encoder', 'predictor'):
            shapes = torch_names.torch_shapes(tmpl[net])
            full = {n: moments[k][net].get(n, np.zeros(s, np.float32)) for n, s in shapes.items()}
            trees[net] = to_layout(torch_names.from_torch(full, tmpl[net]), net, config)
        out.append(trees)
    return out[0], out[1], int(max(steps, default=0))


def state_from_torch(checkpoint: dict, config, with_optimizer: bool = True) -> dict:
    """A train state (Trainer.init's structure) from an original pretraining checkpoint."""
    trainer = train_state.make_trainer(config)
    params = params_from_torch(checkpoint, config)
    online = {'encoder': params['encoder'], 'predictor': params['predictor']}
    opt_state = trainer.optimizer.init(jax.tree.map(jnp.asarray, online))
    step = 0
    if with_optimizer and checkpoint.get('opt'):
        mu, nu, step = adam_from_torch(checkpoint, config)
        opt_state = replace_adam(opt_state, mu, nu, step)
    return {'step': jnp.asarray(step, jnp.int32), 'params': jax.tree.map(jnp.asarray, online),
            'target_encoder': jax.tree.map(jnp.asarray, params['target_encoder']), 'opt_state': opt_state}


def replace_adam(opt_state, mu, nu, step: int):
    """Put Adam moments and every step counter into an optax chain state."""
    def visit(node):
        if isinstance(node, optax.ScaleByAdamState):
            return node._replace(count=jnp.asarray(step, jnp.int32), mu=jax.tree.map(jnp.asarray, mu),
                                 nu=jax.tree.map(jnp.asarray, nu))
        if hasattr(node, '_fields'):  # a NamedTuple state: its counters, and states nested in it
            fields = {f: visit(getattr(node, f)) for f in node._fields}
            if 'count' in node._fields:
                fields['count'] = jnp.asarray(step, jnp.int32)
            return node._replace(**fields)
        if isinstance(node, tuple):
            return tuple(visit(n) for n in node)
        return node
    return visit(opt_state)


def find_adam(opt_state) -> optax.ScaleByAdamState:
    for node in opt_state if isinstance(opt_state, tuple) else ():
        if isinstance(node, optax.ScaleByAdamState):
            return node
    raise ValueError('no Adam state in the optimiser state')


# ----------------------------------------------------------------------------------------
# Attentive probes and the action-conditioned predictor (params checkpoints)
# ----------------------------------------------------------------------------------------
KINDS = ('auto', 'pretrain', 'probe', 'ac')
PROBE_HEADS = ('verb_classifier', 'noun_classifier', 'action_classifier', 'linear')  # query i feeds the i-th present


def checkpoint_kind(checkpoint: dict) -> str:
    """'probe' (an evaluation's classifier), 'ac' (V-JEPA 2-AC) or 'pretrain'."""
    if 'classifier' in checkpoint or 'classifiers' in checkpoint:
        return 'probe'
    predictor = checkpoint.get('predictor') or {}
    if any(torch_names.strip_wrappers(k) == 'action_encoder.weight' for k in predictor):
        return 'ac'
    return 'pretrain'


def probe_state_dict(checkpoint: dict, index: int = 0) -> dict:
    """V-JEPA 1 files hold one `classifier`; V-JEPA 2 files a list `classifiers` (the released
    probe is element 0; training saves one per lr x wd grid point)."""
    if 'classifier' in checkpoint:
        return dict(checkpoint['classifier'])
    heads = checkpoint['classifiers']
    if not 0 <= index < len(heads):
        raise ValueError(f'--classifier_index={index}: the file holds {len(heads)} classifiers')
    return dict(heads[index])


def _shapes(state_dict: dict) -> dict:
    return {torch_names.strip_wrappers(k): tuple(np.shape(v)) for k, v in state_dict.items()}


def _check_heads(dim: int, num_heads: int, what: str):
    if dim % num_heads:
        raise ValueError(f'{what} width {dim} is not divisible by --num_heads={num_heads}')


def probe_spec(state_dict: dict, num_heads: int) -> dict:
    """The probe's structure from its tensor shapes (num_heads cannot be read off a file)."""
    shapes = _shapes(state_dict)
    if 'pooler.query_tokens' not in shapes:
        raise ValueError(f'not an attentive probe: no pooler.query_tokens among {sorted(shapes)[:5]}...')
    _, num_queries, dim = shapes['pooler.query_tokens']
    _check_heads(dim, num_heads, 'probe')
    heads = [[name, shapes[f'{name}.weight'][0]] for name in PROBE_HEADS if f'{name}.weight' in shapes]
    if len(heads) != num_queries:
        raise ValueError(f'probe has {num_queries} queries but heads {heads}')
    blocks = {k.split('.')[2] for k in shapes if k.startswith('pooler.blocks.')}
    return {'embed_dim': dim, 'num_heads': num_heads, 'depth': 1 + len(blocks), 'heads': heads,
            'mlp_ratio': shapes['pooler.cross_attention_block.mlp.fc1.weight'][0] / dim,
            'style': 'vjepa1' if 'pooler.cross_attention_block.xattn.proj.weight' in shapes else 'vjepa2'}


def ac_spec(state_dict: dict, num_heads: int, grid, use_extrinsics: bool) -> dict:
    """The AC predictor's structure from its tensor shapes; grid: tokens per frame (H', W')."""
    shapes = _shapes(state_dict)
    pred_dim, dim = shapes['predictor_embed.weight']
    _check_heads(pred_dim, num_heads, 'AC predictor')
    depth = len({k.split('.')[1] for k in shapes if k.startswith('predictor_blocks.')})
    return {'grid': list(grid), 'embed_dim': dim, 'predictor_embed_dim': pred_dim, 'depth': depth,
            'num_heads': num_heads, 'mlp_ratio': shapes['predictor_blocks.0.mlp.fc1.weight'][0] / pred_dim,
            'action_dim': shapes['action_encoder.weight'][1], 'use_extrinsics': bool(use_extrinsics)}


def module_params(state_dict: dict, build) -> dict:
    """torch state dict -> pure-dict params of the module build() makes (shapes only)."""
    from flax import nnx
    template = nnx.to_pure_dict(nnx.state(nnx.eval_shape(build)))
    return torch_names.from_torch(state_dict, template)


def convert_probe(checkpoint: dict, output: str, num_heads: int, index: int = 0, source: str = '') -> str:
    from flax import nnx

    from vjepa_jax import pretrained
    from vjepa_jax.models.probe import probe_from_spec
    state_dict = probe_state_dict(checkpoint, index)
    spec = probe_spec(state_dict, num_heads)
    params = module_params(state_dict, lambda: probe_from_spec(spec, nnx.Rngs(0)))
    meta = {'kind': 'probe', 'spec': spec, 'converted_from': source, 'classifier_index': index}
    return pretrained.save_params(output, {'probe': params}, meta)


def convert_ac(checkpoint: dict, config, output: str, num_heads: int, use_extrinsics: bool = False,
               source: str = '') -> str:
    """Encoder (the `encoder` the released hub loads; `target_encoder` when absent) and AC predictor."""
    from flax import nnx

    from vjepa_jax import pretrained
    from vjepa_jax.models.ac_predictor import ac_predictor_from_spec
    net = 'encoder' if checkpoint.get('encoder') else 'target_encoder'
    encoder = params_from_torch(checkpoint, config, nets=(net,))[net]
    grid = [config.model.img_size // config.model.patch_size] * 2
    spec = ac_spec(dict(checkpoint['predictor']), num_heads, grid, use_extrinsics)
    predictor = module_params(dict(checkpoint['predictor']), lambda: ac_predictor_from_spec(spec, nnx.Rngs(0)))
    meta = {'kind': 'ac', 'spec': spec, 'model': config.model.to_dict(), 'encoder_from': net,
            'converted_from': source}
    return pretrained.save_params(output, {'encoder': encoder, 'ac_predictor': predictor}, meta)


def params_to_torch(directory: str) -> dict:
    """A probe or AC params checkpoint in the original's file layout."""
    from vjepa_jax import pretrained
    meta = pretrained.read_meta(directory)
    if meta['kind'] == 'probe':
        probe, _ = pretrained.load_probe(directory)
        tensors = torch_names.to_torch(jax.tree.map(np.asarray, nnx_params(probe)))
        if meta['spec']['style'] == 'vjepa1':
            return {'classifier': {f'module.{k}': v for k, v in tensors.items()}, 'opt': None, 'scaler': None,
                    'epoch': 0, 'batch_size': 0, 'world_size': 1, 'lr': 0.0}
        return {'classifiers': [tensors], 'opt': None, 'scaler': None, 'epoch': 0, 'batch_size': 0, 'world_size': 1}
    encoder, predictor, _ = pretrained.load_ac(directory)
    encoder_params = from_layout(nnx_params(encoder), 'encoder', pretrained.encoder_config(meta['model']))

    def named(params):
        return {f'module.{k}': v for k, v in torch_names.to_torch(jax.tree.map(np.asarray, params)).items()}
    enc, pred = named(encoder_params), named(nnx_params(predictor))
    return {'encoder': enc, 'predictor': pred, 'target_encoder': dict(enc), 'opt': None, 'scaler': None,
            'epoch': 0, 'loss': 0.0, 'batch_size': 0, 'world_size': 1, 'lr': 0.0}


def nnx_params(module) -> dict:
    from flax import nnx
    return nnx.to_pure_dict(nnx.state(module))


# ----------------------------------------------------------------------------------------
# JAX -> torch
# ----------------------------------------------------------------------------------------
def fixed_tables(config, trainer) -> dict:
    """The sin-cos position tables the original stores as frozen parameters (none with RoPE)."""
    from vjepa_jax.models.vit import VIT_VARIANTS, sincos_table
    m = config.model
    if m.pos_embed != 'sincos':
        return {'encoder': {}, 'predictor': {}}
    dim = VIT_VARIANTS[m.variant]['embed_dim']
    return {'encoder': {'pos_embed': sincos_table(dim, trainer.grid, m.uniform_power)[None]},
            'predictor': {'predictor_pos_embed': sincos_table(m.pred_embed_dim, trainer.grid, m.uniform_power)[None]}}


def state_to_torch(state: dict, config) -> dict:
    """A checkpoint dict in the original's format: module.backbone. names in its order (with the
    fixed position tables), and an AdamW state dict indexed as its optimiser indexes."""
    tables = fixed_tables(config, train_state.make_trainer(config))
    nets = {'encoder': state['params']['encoder'], 'predictor': state['params']['predictor'],
            'target_encoder': state['target_encoder']}
    out = {}
    for net, tree in nets.items():
        tensors = {**tables[template_net(net)],
                   **torch_names.to_torch(jax.tree.map(np.asarray, from_layout(tree, net, config)))}
        tensors = sorted(tensors.items(), key=lambda item: torch_names.original_order(item[0]))
        out[net] = {TORCH_PREFIX + k: np.asarray(v, np.float32) for k, v in tensors}
    adam = find_adam(state['opt_state'])
    step = int(state['step'])
    moments = {k: {net: torch_names.to_torch(jax.tree.map(np.asarray, from_layout(tree[net], net, config)))
                   for net in ('encoder', 'predictor')} for k, tree in (('exp_avg', adam.mu), ('exp_avg_sq', adam.nu))}
    order = optimizer_order(out)
    opt_state = {}
    for index, (net, name) in enumerate(order):
        if name not in torch_names.FIXED_BUFFERS:
            opt_state[index] = {'step': np.asarray(float(step), np.float32),
                                'exp_avg': moments['exp_avg'][net][name], 'exp_avg_sq': moments['exp_avg_sq'][net][name]}
    o, groups, start = config.optim, [], 0
    for weights in (True, False):
        for net in ('encoder', 'predictor'):
            count = sum(1 for name, value in out[net].items() if ('bias' not in name and np.ndim(value) != 1) == weights)
            group = {'lr': float(o.lr), 'betas': tuple(o.betas), 'eps': float(o.eps), 'amsgrad': False,
                     'weight_decay': float(o.weight_decay) if weights else 0.0,
                     'params': list(range(start, start + count))}
            if not weights:
                group['WD_exclude'] = True
            groups.append(group)
            start += count
    out['opt'] = {'state': opt_state, 'param_groups': groups}
    out.update(scaler=None, epoch=step // config.optim.ipe, loss=0.0, batch_size=config.data.global_batch_size,
               world_size=jax.process_count(), lr=float(o.lr))
    return out


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------
FLAGS = flags.FLAGS
def define_flags():
    """Command-line flags (defined only when run as a tool, so both tools import together)."""
    flags.DEFINE_string('checkpoint', None, 'the original .pth / .pth.tar / .pt file')
    global _CONFIG
    _CONFIG = config_lib.define_config_flag(help_string='config of the encoder (configs/pretrain/...); not needed '
                                            'for probes')
    flags.DEFINE_string('output', None, 'torch -> JAX: a new directory; --to_torch: the .pth.tar to write')
    flags.DEFINE_enum('kind', 'auto', KINDS, 'what the file holds; auto: probe if it has classifier(s), ac if its '
                      'predictor has action_encoder, else pretrain')
    flags.DEFINE_bool('optimizer', False, 'pretrain: also convert the AdamW state (to continue pretraining)')
    flags.DEFINE_integer('num_heads', 16, 'probe / AC predictor attention heads (16 in every released file)')
    flags.DEFINE_integer('classifier_index', 0, 'V-JEPA 2 probe files: which of the saved classifiers (0 = released)')
    flags.DEFINE_bool('use_extrinsics', False, 'AC predictor: condition on camera extrinsics too (off as released)')
    flags.DEFINE_bool('to_torch', False, 'export --workdir (a training workdir or a probe / AC directory) in the '
                      'original format')
    flags.DEFINE_string('workdir', None, 'with --to_torch: a workdir holding checkpoints/, or a params checkpoint')


def write_orbax(state: dict, config, workdir: str, converted_from: str = '') -> str:
    from vjepa_jax import checkpoint
    step = int(state['step'])
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    if step in ckpt.all_steps():
        raise ValueError(f'{ckpt.directory} already holds step {step}: choose an empty --output directory')
    position = DataStream.position(step)
    meta = {'seed': config.seed, 'step': step, 'converted_from': converted_from,
            'config': json.loads(config.to_json_best_effort())}
    ckpt.save(step, state, position, meta, force=True)
    ckpt.close()
    return os.path.join(ckpt.directory, str(step))


def read_orbax(workdir: str, config) -> dict:
    from vjepa_jax import checkpoint, sharding
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    step = ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints')
    _, abstract = train_state.state_layout(train_state.make_trainer(config), config, sharding.make_mesh(config.mesh))
    return ckpt.restore(step, abstract)[0]


def main(argv):
    from vjepa_jax.config import UsageError

    def config_or_fail(what):
        if _CONFIG.value is None:
            raise UsageError(f'{what} needs --config=configs/pretrain/<name>.py (the encoder it belongs to)')
        return _CONFIG.value

    try:
        if not FLAGS.output:
            raise UsageError('pass --output=... (a new directory; with --to_torch, the .pth.tar to write)')
        if FLAGS.to_torch:
            if not FLAGS.workdir:
                raise UsageError('--to_torch needs --workdir=DIR (a training workdir, or a probe / AC directory)')
            if epath.Path(FLAGS.workdir, 'meta.json').exists():  # local or gs://
                torch_io.save_pth(params_to_torch(FLAGS.workdir), FLAGS.output)
            else:
                config = config_or_fail('--to_torch of a training workdir')
                torch_io.save_pth(state_to_torch(read_orbax(FLAGS.workdir, config), config), FLAGS.output)
            print(f'wrote {FLAGS.output}')
            return
        if not FLAGS.checkpoint:
            raise UsageError('pass --checkpoint=FILE.pth.tar (or --to_torch --workdir=DIR)')
        if not os.path.exists(FLAGS.checkpoint):
            raise UsageError(f'--checkpoint={FLAGS.checkpoint}: file not found')
        checkpoint = torch_io.load_pth(FLAGS.checkpoint)
        kind = checkpoint_kind(checkpoint) if FLAGS.kind == 'auto' else FLAGS.kind
        if kind == 'probe':
            path = convert_probe(checkpoint, FLAGS.output, FLAGS.num_heads, FLAGS.classifier_index, FLAGS.checkpoint)
            print(f'wrote attentive probe {path} (load with vjepa_jax.pretrained.load_probe)')
            return
        config = config_or_fail(f'a {kind} checkpoint')
        if kind == 'ac':
            path = convert_ac(checkpoint, config, FLAGS.output, FLAGS.num_heads, FLAGS.use_extrinsics,
                              FLAGS.checkpoint)
            print(f'wrote encoder + action-conditioned predictor {path} (load with vjepa_jax.pretrained.load_ac)')
            return
        tokens = sum(1 for k in checkpoint.get('predictor', {}) if '.mask_tokens.' in f'.{k}')
        if tokens and tokens != factory.num_mask_tokens(config):
            config.model.num_mask_tokens = tokens
            print(f'the predictor has {tokens} mask tokens: use --config.model.num_mask_tokens={tokens} with this '
                  f'workdir')
        state = state_from_torch(checkpoint, config, with_optimizer=FLAGS.optimizer)
        path = write_orbax(state, config, FLAGS.output, FLAGS.checkpoint)
        print(f'wrote {path} (step {int(state["step"])}; resume or evaluate with --workdir={FLAGS.output})')
    except (UsageError, ValueError, KeyError, FileNotFoundError, FileExistsError, torch_io.UnsafeCheckpointError) as e:
        raise SystemExit(f'error: {e}')


def run():
    define_flags()
    config_lib.run(main)


if __name__ == '__main__':
    run()
