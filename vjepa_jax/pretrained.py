"""Weights as ready NNX modules: attentive probes, the V-JEPA 2-AC world model, and encoders
from training (or converted) workdirs.

A params checkpoint is a directory holding `params/` (orbax, a pure dict of arrays) and
`meta.json` (what to build: kind, spec, config). The converter writes them; probes trained
here are saved the same way.

    probe, meta = pretrained.load_probe('ckpt/vitl16_k400_probe')   # logits = probe(tokens)['linear']
    encoder, predictor, meta = pretrained.load_ac('ckpt/vjepa2_ac_vitg')
    encoder = pretrained.load_encoder('ckpt/vitl16', config)        # the EMA target encoder
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

PARAMS, META = 'params', 'meta.json'


def _path(directory: str) -> epath.Path:
    return epath.Path(directory if '://' in directory else os.path.abspath(directory))


def save_params(directory: str, params: dict, meta: dict) -> str:
    """Write params (nested dict of arrays) and meta (JSON-able) to a new or empty directory."""
    path = _path(directory)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f'{directory} is not empty: choose a new --output directory')
    path.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path / PARAMS, jax.tree.map(np.asarray, params))
    checkpointer.wait_until_finished()
    (path / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return str(path)


def read_meta(directory: str) -> dict:
    path = _path(directory) / META
    if not path.exists():
        raise FileNotFoundError(f'{path} not found: {directory} is not a params checkpoint '
                                f'(write one with vjepa_jax.tools.convert_torch)')
    return json.loads(path.read_text())


def load_params(directory: str, abstract: dict) -> dict:
    """Restore params shaped like abstract (a pure dict of arrays or ShapeDtypeStructs)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), abstract)
    return ocp.StandardCheckpointer().restore(_path(directory) / PARAMS, abstract)


def _materialise(build, directory: str, key: str | None = None, params: dict | None = None):
    """Build a module's structure without allocating (nnx.eval_shape), then fill it with the
    checkpoint's params[key] (or the given params)."""
    graphdef, state = nnx.split(nnx.eval_shape(build))
    if params is None:
        params = load_params(directory, {key: nnx.to_pure_dict(state)})[key]
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def _check_kind(directory: str, kind: str) -> dict:
    meta = read_meta(directory)
    if meta.get('kind') != kind:
        raise ValueError(f'{directory} holds a {meta.get("kind")!r} checkpoint, not {kind!r}')
    return meta


def load_probe(directory: str):
    """-> (AttentiveProbe, meta) from a params checkpoint of kind 'probe'."""
    from vjepa_jax.models.probe import probe_from_spec
    meta = _check_kind(directory, 'probe')
    return _materialise(lambda: probe_from_spec(meta['spec'], nnx.Rngs(0)), directory, 'probe'), meta


def encoder_config(model: dict):
    """A full config whose model block is `model` (as stored in meta.json)."""
    from vjepa_jax.recipes import base_config
    config = base_config()
    config.model.update(model)
    return config


def build_encoder(config, seed: int = 0):
    """The config's encoder, randomly initialised (the original's init) from seed."""
    from vjepa_jax.models import factory
    return factory.build_models(config.model, factory.num_mask_tokens(config), nnx.Rngs(seed))[0]


def load_ac(directory: str):
    """-> (encoder, ACPredictor, meta) from a params checkpoint of kind 'ac' (V-JEPA 2-AC).
    The encoder is the one the released hub loads (`encoder`; as released it equals the
    target encoder: the AC training never updates it)."""
    from vjepa_jax.models.ac_predictor import ac_predictor_from_spec
    meta = _check_kind(directory, 'ac')
    config = encoder_config(meta['model'])
    encoder_shape = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: build_encoder(config))))
    predictor_shape = nnx.to_pure_dict(nnx.state(nnx.eval_shape(
        lambda: ac_predictor_from_spec(meta['spec'], nnx.Rngs(0)))))
    params = load_params(directory, {'encoder': encoder_shape, 'ac_predictor': predictor_shape})
    encoder = _materialise(lambda: build_encoder(config), directory, params=params['encoder'])
    predictor = _materialise(lambda: ac_predictor_from_spec(meta['spec'], nnx.Rngs(0)), directory,
                             params=params['ac_predictor'])
    return encoder, predictor, meta


def encoder_for_evaluation(config, workdir: str = '', which: str = 'target_encoder', random_init: bool = False,
                           seed: int = 0):
    """A workdir's encoder (one process, one device), or a random init when asked for."""
    if workdir:
        return load_encoder(workdir, config, which=which)
    if random_init:
        return build_encoder(config, seed=seed)
    raise ValueError('no weights named: pass a workdir (training or converted) or ask for a random init')


def _restore_state(workdir: str, config, step: int | None) -> dict:
    from vjepa_jax import checkpoint, sharding, train_state
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: train or convert one first')
    trainer = train_state.make_trainer(config)
    one_device = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])  # evaluation: one device
    _, abstract = train_state.state_layout(trainer, config, one_device)
    state = ckpt.restore(step, abstract)[0]
    ckpt.close()
    return state


def load_encoder(workdir: str, config, which: str = 'target_encoder', step: int | None = None):
    """The encoder of a training (or converted) workdir's checkpoint as an NNX module.
    which: 'target_encoder' (EMA, what evaluations use) or 'encoder' (the context encoder)."""
    state = _restore_state(workdir, config, step)
    params = state['target_encoder'] if which == 'target_encoder' else state['params']['encoder']
    return _materialise(lambda: build_encoder(config), workdir, params=params)


def build_jepa(config, seed: int = 0) -> tuple:
    """A randomly initialised (encoder, predictor, target_encoder); the target starts as the encoder."""
    from vjepa_jax.models import factory
    encoder, predictor = factory.build_models(config.model, factory.num_mask_tokens(config), nnx.Rngs(seed))
    return encoder, predictor, nnx.clone(encoder)


def load_jepa(workdir: str, config, step: int | None = None) -> tuple:
    """(encoder, predictor, target_encoder) of a training (or converted) workdir's checkpoint:
    the whole world model of the objective (context encoder + predictor, EMA targets)."""
    from vjepa_jax.models import factory
    state = _restore_state(workdir, config, step)
    count = factory.num_mask_tokens(config)
    encoder = _materialise(lambda: build_encoder(config), workdir, params=state['params']['encoder'])
    predictor = _materialise(lambda: factory.build_models(config.model, count, nnx.Rngs(0))[1], workdir,
                             params=state['params']['predictor'])
    target = _materialise(lambda: build_encoder(config), workdir, params=state['target_encoder'])
    return encoder, predictor, target
