"""The default configuration (V-JEPA 1 ViT-L/16, configs/pretrain/vitl16.yaml) and loading.

Every number here is the original's; config files in configs/ start from base_config()
and change only what differs. Fields that are off by default use 0 / '' (never None),
so every field can be set from the command line: --config.optim.lr=3e-4.
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections


class UsageError(ValueError):
    """A wrong setting or input the user can fix; the entry point prints it as one line."""


def mask_generator(num_blocks, spatial_scale, aspect_ratio=(0.75, 1.5), temporal_scale=(1.0, 1.0),
                   max_temporal_keep=1.0):
    return ml_collections.ConfigDict(dict(
        num_blocks=num_blocks, spatial_scale=(spatial_scale, spatial_scale), aspect_ratio=aspect_ratio,
        temporal_scale=temporal_scale, max_temporal_keep=max_temporal_keep,
        num_context=0, num_target=0))  # 0: the keep_quantile quantile (masks.py)


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 234
    c.model = ml_collections.ConfigDict(dict(
        variant='large', img_size=224, num_frames=16, patch_size=16, tubelet_size=2, in_chans=3,
        pos_embed='sincos',       # 'sincos' (V-JEPA 1) | 'rope' (V-JEPA 2)
        rope_form='tiled',        # 'tiled' (released V-JEPA 2 weights) | 'interleaved' (correct RoPE)
        uniform_power=True, rescale_init=False,  # rescale_init: V-JEPA 2 keeps the 1/sqrt(2 l) rescale
        pred_depth=12, pred_embed_dim=384, pred_num_heads=0,  # 0: the encoder's head count
        zero_init_mask_tokens=True,
        num_mask_tokens=0,        # 0: one per mask generator (released V-JEPA 2 predictors have 10)
        scan_layers=False,        # lax.scan over stacked blocks (compile time flat in depth)
        remat_policy='none',      # 'none' | 'full' | 'dots' | 'dots_no_batch'
        attention_query_chunk=0,  # >0: attention over query blocks of this size (score memory / (N / size))
        dtype='bfloat16',         # compute dtype; params and optimiser stay float32
    ))
    c.mask = ml_collections.ConfigDict(dict(
        keep_quantile=0.05,
        generators=ml_collections.ConfigDict(dict(  # one learned mask token per generator
            short=mask_generator(8, 0.15), long=mask_generator(2, 0.7))),
    ))
    c.loss = ml_collections.ConfigDict(dict(loss_exp=1.0, var_weight=0.0, cov_weight=0.0))  # weights: jepa.jepa_loss
    c.optim = ml_collections.ConfigDict(dict(
        ipe=300, epochs=300, ipe_scale=1.25, warmup=40,
        lr_schedule='warmup_cosine', anneal=0,  # anneal: epochs of linear decay ('wsd' only)
        start_lr=2e-4, lr=6.25e-4, final_lr=1e-6,
        weight_decay=0.04, final_weight_decay=0.4,
        ema=(0.998, 1.0), clip_grad=10.0, betas=(0.9, 0.999), eps=1e-8,
    ))
    c.data = ml_collections.ConfigDict(dict(
        datasets='',              # TFDS names, comma-separated ('kinetics/k400,ssv2'); '' = generated clips
        weights='',               # mixture weights, comma-separated ('0.7,0.3'); '' = one dataset
        data_dir='',              # where python -m vjepa_jax.data.build wrote them
        split='train',
        global_batch_size=3072,   # 24 per GPU x 128 A100
        frame_step=4,             # 16 frames x step 4 = a 64-frame span
        target_fps=0.0,           # V-JEPA 2: 4.0 (step = ceil(fps) // 4); 0 = frame_step
        crop_scale=(0.3, 1.0), crop_ratio=(0.75, 1.35), flip=True,
        num_workers=0,            # grain worker processes (0: decode in the main process)
        decoded_cache_mb=0,       # > 0: decode each video once and keep it, up to this many MB per source
    ))
    c.train = ml_collections.ConfigDict(dict(
        num_steps=0,              # 0: epochs * ipe
        log_every=10,             # metrics, progress line and finite-loss check every N steps
        tensorboard=True,         # event files in WORKDIR/tensorboard besides metrics.jsonl
    ))
    c.mesh = ml_collections.ConfigDict(dict(  # sharding.py; -1 takes the remaining devices
        data=-1, fsdp=1, tensor=1,
    ))
    c.checkpoint = ml_collections.ConfigDict(dict(  # orbax, WORKDIR/checkpoints; resumes from the latest
        every_steps=1000, keep_last=3,
        keep_every=0,             # also keep every N-th step for good (0: off)
        async_save=True,
    ))
    return c


def eval_config() -> ml_collections.ConfigDict:
    """Frozen-feature classification (vjepa_jax.evals.classification): the originals' recipe."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.log_every = 20
    c.encoder = ml_collections.ConfigDict(dict(
        config='configs/pretrain/vitl16.py',  # the encoder's pretraining config (its model block)
        model_overrides=ml_collections.ConfigDict(),  # e.g. {'img_size': 256}
        workdir='',               # a training or converted workdir (its latest checkpoint)
        which='target_encoder',   # 'target_encoder' (EMA; the originals evaluate it) | 'encoder'
        random_init=False,        # no workdir: a randomly initialised encoder (a baseline)
    ))
    c.data = ml_collections.ConfigDict(dict(
        dataset='kinetics/k400', data_dir='', train_split='train', val_split='validation',
        num_classes=400, label_key='label',  # label_key: the record field to predict
        frames_per_clip=16, frame_step=4,
        num_segments=8, num_views=3,  # K400 16x8x3; SSv2 16x2x3; images 1x1
        resolution=224, num_workers=0,
        crop_scale=(0.3, 1.0), flip=True,  # training views: random resized crop scale, horizontal flip
    ))
    c.probe = ml_collections.ConfigDict(dict(style='vjepa1', depth=1, num_heads=16))
    c.optim = ml_collections.ConfigDict(dict(
        epochs=20, batch_size=256,
        lr=[1e-3], weight_decay=[0.01],  # lists: every lr x wd pair trains its own probe head
        start_lr=0.0,             # 0: = lr (no warmup ramp)
        final_lr=0.0, final_weight_decay=1e-6, warmup=0.0,
        clip_grad=1.0, decay_all=False,  # decay_all: V-JEPA 2 also decays biases and norms
    ))
    c.features = ml_collections.ConfigDict(dict(
        cache=False,              # True: encode once, train from disk
        in_memory=False,          # with cache: load it into memory, one jitted call per epoch (small data)
        cache_dir='',             # '' = WORKDIR/features; a folder shared by probes of other labels of the same
    ))                            # dataset, views and encoder (reused when its key.json matches)
    return c


def load_config(path: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """Load `path[:arg]` (a file with get_config(arg=None)) and apply {dotted.key: value}.
    An unknown key raises a one-line KeyError naming it."""
    path, _, arg = path.partition(':')
    if not os.path.exists(path):
        raise FileNotFoundError(f'config file {path} not found: pass --config=configs/pretrain/<name>.py')
    spec = importlib.util.spec_from_file_location('vjepa_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
        raise AttributeError(f'config file {path} has no get_config(): define one returning a ConfigDict')
    config = module.get_config(arg) if arg else module.get_config()
    for key, value in (overrides or {}).items():
        set_field(config, key, value)
    return config


def get_field(config: ml_collections.ConfigDict, key: str):
    """config[a.b.c]; a key the config does not have raises a one-line KeyError naming it."""
    node, parts = config, key.split('.')
    for i, name in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            raise KeyError(f'unknown config key {".".join(parts[:i + 1])!r} (in {key!r}): check the spelling')
        node = node[name]
    return node


def set_field(config: ml_collections.ConfigDict, key: str, value) -> None:
    """config[a.b.c] = value, refusing keys the config does not have."""
    get_field(config, key)
    parent, _, leaf = key.rpartition('.')
    (get_field(config, parent) if parent else config)[leaf] = value


# ----------------------------------------------------------------------------------------
# Command-line overrides: --config.a.b=value
# ----------------------------------------------------------------------------------------
def split_config_overrides(argv: list) -> tuple:
    """Separate '--config.a.b=v' arguments -> ({'a.b': 'v'}, the other arguments)."""
    overrides, rest = {}, []
    for arg in argv:
        if arg.startswith('--config.'):
            key, eq, value = arg[len('--config.'):].partition('=')
            if not eq:
                raise ValueError(f'{arg}: write --config.{key}=VALUE')
            overrides[key] = value
        else:
            rest.append(arg)
    return overrides, rest


def run_with_overrides(main, argv: list) -> None:
    """absl's app.run(main(overrides)) with the '--config.a.b=v' arguments taken out of argv
    first (absl would refuse them); a malformed one is a one-line error."""
    from absl import app
    try:
        overrides, rest = split_config_overrides(argv)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    app.run(lambda _: main(overrides), argv=rest)


def parse_value(text: str, current):
    """Parse a command-line string to the type of the current field."""
    import ast
    if isinstance(current, bool):
        if text.lower() not in ('true', 'false', '1', '0'):
            raise ValueError(f'expected true/false, got {text!r}')
        return text.lower() in ('true', '1')
    if isinstance(current, str):
        return text
    value = ast.literal_eval(text)
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, list) and not isinstance(value, (list, tuple)):
        value = [value]  # --config.optim.lr=1e-3 for a list field
    if isinstance(current, list):
        value = [float(v) if isinstance(v, int) and current and isinstance(current[0], float) else v for v in value]
    return value


def load_with_overrides(config_path: str, overrides: dict) -> ml_collections.ConfigDict:
    """load_config plus {dotted key: command-line text}; every mistake is a one-line UsageError."""
    try:
        config = load_config(config_path)
    except (FileNotFoundError, AttributeError) as e:
        raise UsageError(str(e)) from None
    for key, text in overrides.items():
        try:
            current = get_field(config, key)
        except KeyError as e:
            raise UsageError(f'{e.args[0]} (--helpconfig lists the fields)') from None
        try:
            set_field(config, key, parse_value(text, current))
        except (ValueError, SyntaxError, TypeError) as e:
            raise UsageError(f'--config.{key}={text}: not a valid {type(current).__name__} '
                             f'(current value {current!r}; {type(e).__name__})') from None
    return config
