"""Every recipe in one place: the defaults (V-JEPA 1 ViT-L/16 pretraining, frozen evaluation)
and the V-JEPA 2 and evaluation recipes that configs/*.py start from.

Every number is the original's; config files change only what differs. Fields that are off
by default use 0 / '' (never None) and lists are tuples, so every field can be set from the
command line: --config.optim.lr=3e-4, --config.optim.lr='(1e-3,3e-3)'.
"""
from __future__ import annotations

import ml_collections


def mask_generator(num_blocks, spatial_scale, aspect_ratio=(0.75, 1.5), temporal_scale=(1.0, 1.0),
                   max_temporal_keep=1.0, *, index: int):
    """One multi-block mask generator. index: its place in the original's list of generators,
    which is also the predictor's mask token it uses (ConfigDict sorts its keys by name, so the
    order is this field, never the names; masks.generator_names)."""
    return ml_collections.ConfigDict(dict(
        index=index, num_blocks=num_blocks, spatial_scale=(spatial_scale, spatial_scale), aspect_ratio=aspect_ratio,
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
        attention_impl='auto',    # 'auto' | 'flash' | 'xla' | 'cudnn' | 'pallas': models/vit.py::attention
        dtype='bfloat16',         # compute dtype; params and optimiser stay float32
    ))
    c.mask = ml_collections.ConfigDict(dict(
        keep_quantile=0.05,
        generators=ml_collections.ConfigDict(dict(  # one learned mask token per generator, by index
            short=mask_generator(8, 0.15, index=0), long=mask_generator(2, 0.7, index=1))),  # the original's order
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
        uint8_clips=True,         # workers send uint8 clips (a quarter of the bytes), normalised in the step:
                                  # 1.75x the original loader's clips/s, float clips 1.03x (docs/scaling.md);
                                  # the resize rounds to whole levels (within 1 of the original's float resize)
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
        config='configs/pretrain/vitl16.py',  # the encoder's pretraining config (repository-relative or absolute)
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
    c.probe = ml_collections.ConfigDict(dict(style='vjepa1', depth=1, num_heads=16,
                                             attention_impl='auto'))  # as model.attention_impl
    c.optim = ml_collections.ConfigDict(dict(
        epochs=20, batch_size=256,
        lr=(1e-3,), weight_decay=(0.01,),  # every lr x wd pair trains its own probe head
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



# ----------------------------------------------------------------------------------------
# V-JEPA 2 pretraining (facebookresearch/vjepa2 configs/train/*)
# ----------------------------------------------------------------------------------------
VARIANTS = {'vitl16': 'large', 'vith16': 'huge', 'vitg16': 'giant_xformers'}
PRETRAIN_EPOCHS = {'vitl16': 10, 'vith16': 10, 'vitg16': 800}  # as released (ipe 300)


def pretrain(name: str):
    """16 frames at 256 px, 4 fps, RoPE, warmup then constant lr, constant EMA and wd, no clip."""
    c = base_config()
    c.seed = 239
    c.model.update(variant=VARIANTS[name], img_size=256, pos_embed='rope', rope_form='tiled',
                   rescale_init=True, pred_num_heads=12, remat_policy='full')
    c.data.global_batch_size = 24 * 128  # 24 per GPU x 16 nodes x 8
    c.data.target_fps = 4.0
    c.data.weights = '0.335,0.100,0.565'  # K710, SSv2, HowTo100M (set data.datasets to your builds)
    c.optim.update(epochs=PRETRAIN_EPOCHS[name], warmup=40, start_lr=1e-4, lr=5.25e-4, final_lr=5.25e-4,
                   weight_decay=0.04, final_weight_decay=0.04, ema=(0.99925, 0.99925), clip_grad=0.0)
    return c


def cooldown(name: str, img_size: int = 256):
    """64 frames, linear lr decay 5.25e-4 -> 1e-6 over int(1.25 * 40 * 300) steps, 40 epochs;
    starts from the pretrained checkpoint. As released, training stops at 80 % of the decay
    (lr ~1.06e-4); set optim.ipe_scale=1.0 for the paper's decay to 1e-6."""
    c = pretrain(name)
    c.model.update(num_frames=64, img_size=img_size)
    c.data.global_batch_size = 3072  # 12 per GPU x 256 GPUs (256 px), 6 x 512 (384 px)
    c.optim.update(lr_schedule='linear_decay', epochs=40, warmup=0, lr=5.25e-4, final_lr=1e-6)
    return c


# ----------------------------------------------------------------------------------------
# Frozen evaluation (the originals' configs/evals)
# ----------------------------------------------------------------------------------------
# V-JEPA 2: 4-block probes, 16 heads, 20 heads trained together over this grid, best reported
VJEPA2_LR = (5e-3, 3e-3, 1e-3, 3e-4, 1e-4)
VJEPA2_WD = (0.01, 0.1, 0.4, 0.8)
ENCODERS = {'vitl16': ('configs/pretrain/vitl16.py', 224), 'vith16': ('configs/pretrain/vith16.py', 224),
            'vith16_384': ('configs/pretrain/vith16_384.py', 384),
            'vjepa2_vitl16': ('configs/pretrain/vjepa2_vitl16.py', 256),
            'vjepa2_vitg16_384': ('configs/pretrain/vjepa2_vitg16_cooldown.py:384', 384)}


def recipe(dataset: str, num_classes: int, segments: int, views: int, encoder: str = 'vitl16'):
    """The V-JEPA 1 recipe (one query, one cross-attention block; AdamW lr 1e-3 cosine, wd 0.01,
    20 epochs); encoders named 'vjepa2_*' get the V-JEPA 2 probe and its lr x wd grid."""
    if encoder not in ENCODERS:
        raise ValueError(f'encoder {encoder!r}: choose one of {sorted(ENCODERS)}')
    c = eval_config()
    c.encoder.config, c.data.resolution = ENCODERS[encoder]
    # released V-JEPA 2 predictors carry 10 mask tokens (convert_torch says so); the workdir's layout needs it
    c.encoder.model_overrides = ({'img_size': c.data.resolution, 'num_mask_tokens': 10}
                                 if encoder.startswith('vjepa2') else {})
    c.data.update(dataset=dataset, num_classes=num_classes, num_segments=segments, num_views=views)
    if encoder.startswith('vjepa2'):
        c.probe.update(style='vjepa2', depth=4, num_heads=16)
        c.optim.update(lr=VJEPA2_LR, weight_decay=VJEPA2_WD, decay_all=True)
    return c


# ----------------------------------------------------------------------------------------
# V-JEPA 2-AC: the action-conditioned predictor on a frozen encoder (world_model/trainer.py)
# ----------------------------------------------------------------------------------------
def world_model_config() -> ml_collections.ConfigDict:
    """V-JEPA 2-AC as released (app/vjepa_droid, configs/train/vitg16/droid-256px-8f): ViT-g
    encoder at 256 px, predictor 24 x 1024, 16 heads, windows of 8 frames at 4 fps, teacher
    forcing + 2-step rollout L1 on layer-normed tokens, AdamW warmup-stable-decay."""
    c = ml_collections.ConfigDict()
    c.seed = 239
    c.encoder = ml_collections.ConfigDict(dict(
        workdir='',               # a pretraining or converted workdir (its newest checkpoint's EMA target)
        seed=0,                   # no workdir: a random init of `model` (a baseline, and the tests)
        model=ml_collections.ConfigDict(dict(variant='giant_xformers', img_size=256, num_frames=64,
                                             patch_size=16, tubelet_size=2, pos_embed='rope', dtype='bfloat16')),
    ))
    c.predictor = ml_collections.ConfigDict(dict(
        embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0,
        action_dim=7,             # actions and proprioceptive states (DROID: xyz, euler xyz, gripper)
        action_scale=1.0, state_scale=1.0,  # actions and states enter the predictor multiplied by them
        state_fourier=0,          # > 0: sin / cos features of the state at that many octaves (0: the original)
        rope_form='tiled', remat_policy='full', attention_impl='auto', dtype='bfloat16'))
    # readout_weight > 0: + that times the error along the action read-out (world_model/readout.py);
    # 0 is V-JEPA 2-AC's loss. rollout_states: the rollout is fed the 'recorded' states (V-JEPA 2-AC),
    # the states 'integrated' from the actions as the planner feeds them (objective.integrate_states),
    # or states read off its imagined frames ('readout', as plan.imagined_states='readout')
    c.loss = ml_collections.ConfigDict(dict(auto_steps=2, loss_exp=1.0, readout_weight=0.0,
                                            rollout_states='recorded'))
    # the action read-out's fit (cached tokens; fitted when anything above or in plan uses it)
    c.readout = ml_collections.ConfigDict(dict(gaps=(1, 2, 3, 4, 5, 6, 8, 10, 12, 16), ridge=1e-3))
    c.data = ml_collections.ConfigDict(dict(
        episodes='',              # a folder of .npz episodes (world_model/collect.py) ...
        tfds='', data_dir='', split='train',  # ... or a built trajectories dataset
        num_frames=8,             # frames per window (8 at 4 fps in the original)
        frame_step=1,             # env / recorded steps between window frames (DROID: set when building at 4 fps)
        val_episodes=0,           # the last N episodes are held out (val_rollout; cached tokens only)
        global_batch_size=256,    # 8 per GPU x 32 GPUs
        cache_tokens=False,       # True: encode every frame once, windows cut on device (small data)
        num_workers=0,            # grain worker processes for the streamed windows
    ))
    c.optim = ml_collections.ConfigDict(dict(
        ipe=300, epochs=315, ipe_scale=1.0, warmup=15, lr_schedule='wsd', anneal=15,
        start_lr=7.5e-5, lr=4.25e-4, final_lr=0.0, weight_decay=0.04, final_weight_decay=0.04,
        ema=(1.0, 1.0), clip_grad=0.0, betas=(0.9, 0.999), eps=1e-8))  # no clipping, no EMA
    # steps_per_call > 1 (cached tokens only): that many steps in one compiled call (lax.scan),
    # cutting the per-call overhead that dominates small predictors on CPU
    c.train = ml_collections.ConfigDict(dict(num_steps=0, log_every=10, tensorboard=True, steps_per_call=1))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=1000, keep_last=3, async_save=True))
    return c


def env_pretrain_config(img_size=64, patch_size=16) -> ml_collections.ConfigDict:
    """The encoder's V-JEPA pretraining on the episodes' frames (clips of 8 frames, every 2nd step)."""
    c = base_config()
    c.seed = 0
    c.model.update(variant='mini', img_size=img_size, num_frames=8, patch_size=patch_size, tubelet_size=2,
                   pred_depth=2, pred_embed_dim=96, dtype='float32')
    c.mask.generators = ml_collections.ConfigDict(dict(
        short=mask_generator(8, 0.15, index=0), long=mask_generator(2, 0.7, index=1)))
    c.data.update(datasets='trajectories', global_batch_size=16, frame_step=2, crop_scale=(1.0, 1.0),
                  crop_ratio=(1.0, 1.0), flip=False, decoded_cache_mb=1024,
                  uint8_clips=False)  # float clips, as docs/world_model.md's figures were measured
    c.optim.update(ipe=100, epochs=4, warmup=1, ipe_scale=1.0, start_lr=2e-4, lr=1e-3, final_lr=1e-5,
                   ema=(0.99, 1.0))
    c.train.update(log_every=50, tensorboard=False)
    c.checkpoint.update(every_steps=200, keep_last=1, async_save=False)
    return c


def simulated_world_model(env: str, arg=None) -> ml_collections.ConfigDict:
    """The CPU-sized world-model recipe on a simulated environment (configs/world_model/<env>.py):
    random-exploration episodes, a small V-JEPA encoder pretrained on their frames
    (env_pretrain_config), the AC predictor, closed-loop planning (world_model/measure.py).
    arg 'test': a seconds-long setting for the end-to-end test."""
    c = world_model_config()
    c.seed = 0
    # attraction: share of the exploration noise drawn toward the env's exploration_direction (collect.py)
    c.env = ml_collections.ConfigDict(dict(name=env, episodes=300, steps=64, seed=0, attraction=0.0))
    c.pretrain = env_pretrain_config()
    c.encoder.model = ml_collections.ConfigDict(c.pretrain.model.to_dict())
    # a model action sums frame_step env actions of at most max_speed (0.06): scaled to [-1, 1]
    c.predictor.update(embed_dim=64, depth=3, num_heads=4, action_dim=2, action_scale=1 / (5 * 0.06),
                       remat_policy='none', dtype='float32')
    c.data.update(num_frames=4, frame_step=5, val_episodes=20, global_batch_size=32, cache_tokens=True)
    c.optim.update(ipe=100, epochs=10, warmup=1, anneal=3, start_lr=1e-4, lr=1e-3, final_lr=0.0,
                   weight_decay=0.04, final_weight_decay=0.04)
    # 10 steps per call: 66 ms per step against 100-130 ms one call per step (2-core CPU)
    c.train.update(log_every=100, tensorboard=False, steps_per_call=10)
    c.checkpoint.update(every_steps=500, keep_last=1, async_save=False)
    c.plan = ml_collections.ConfigDict(dict(
        # held-out tasks: reset seeds goal_seed + i (episodes use seed + i); settings were chosen on
        # seeds 10_000-10_011 (the door exploration and the wall features on 10_000-10_023), the
        # reported runs use 20_000 on
        goals=5, goal_seed=20_000,        # 5: the whole command in 12-15 min on 2 CPU cores (README)
        horizon=3, model_steps=20, energy='l1_pyramid', energy_steps='all', warm_start=True,
        replan_every=0,  # env steps executed per plan (mpc.PlanConfig; 0: one model action, frame_step)
        imagined_states='integrated',  # mpc.PlanConfig: 'readout' reads each imagined state off the imagined frame
        # CEM 32 x 4, 4 gradient restarts: on the tuning goals a wider search plans no better on the
        # learnt model (two_rooms CEM 8 / 16 / 32 / 64 / 128 samples x 4 iterations: 58 / 75 / 75 / 67 /
        # 67 %; plausibly it finds more of the moves the predictor gets wrong; push's oracle 100 % at
        # 32, 92 % at 128; 4 gradient restarts as good as 8 on both) at a third of the time
        cem=ml_collections.ConfigDict(dict(samples=32, elites=4, iterations=4, momentum_mean=0.15,
                                           momentum_std=0.15, init_std=1.0)),
        gradient=ml_collections.ConfigDict(dict(restarts=4, steps=20, learning_rate=0.1)),
        budgets=((8, 4),), budget_goals=5,  # budget.png: CEM samples x iterations (+ the main run)
    ))
    if env == 'two_rooms':
        # the goal is a place for the agent: plan on the action read-out (world_model/readout.py, fitted
        # to the episodes' actions, no position labels), whose distance ranks the agent's positions by
        # their true distance (Spearman 0.97) where the L1 token distance does not (0.16), and train the
        # predictor along it too (docs/world_model.md)
        c.loss.readout_weight = 0.3
        c.plan.energy = 'readout'
        # a tenth of the walk's noise drawn through the door (collect.py): 65 % of the episodes cross
        # (20 % without); tuning goals (24): CEM 58 / 71 / 50 % at attraction 0 / 0.1 / 0.2, the
        # read-out energy on the true frames 75 / 88 % at 0 / 0.1 (docs/world_model.md)
        c.env.attraction = 0.1
        # where a wall stops a move: sin / cos features of the state let the small predictor learn
        # it, and the rollout reads each later state off the frame it imagined, in training as in
        # planning (integrated states walk through walls); tuning goals (24, two training seeds):
        # CEM 69 -> 75 %, gradient 62 -> 73 % (docs/world_model.md)
        c.predictor.state_fourier = 4
        c.loss.rollout_states = 'readout'
        c.plan.imagined_states = 'readout'
    if arg == 'test':
        c.env.update(episodes=6, steps=20)
        c.pretrain.optim.update(ipe=2, epochs=2)
        c.data.update(val_episodes=2, global_batch_size=4)
        c.optim.update(ipe=3, epochs=2, anneal=1)
        c.train.log_every = 2
        c.plan.update(goals=2, model_steps=2, cem=dict(samples=16, elites=4, iterations=2),
                      gradient=dict(restarts=2, steps=2), budgets=((8, 1), (16, 2)), budget_goals=2)
    return c
