"""The embedded demo (python -m vjepa_jax.demo): a tiny V-JEPA pretrained for a few minutes on
the synthetic physics world (vjepa_jax/worlds/physics.py) on 2 CPU cores, then probed for the
world's latent facts and tested for intuitive physics, against a random init.

World: 64 px videos of 32 frames at 8 fps, 1-3 objects of radius 6-10 px (the world's default is
4-7; larger objects raised physics from 58.9 / 58.9 % to 70.8 / 62.5 % on seeds 0 / 1, docs/demo.md)
behind a 22 px screen. Clips: 8 frames, frame_step 2 (a 16-frame span);
tokens 4 x 8 x 8 (tubelet 2, patch 8). Encoder: the 'mini' ViT (dim 96, depth 4). Masks: one
forward-in-time generator: the first half of the time steps is the context, the second half
the target (max_temporal_keep 0.5). It is what the surprise test asks of the predictor; for
the same pretraining time it scored higher on physics than with V-JEPA's long-range generator
added (docs/demo.md). Loss: V-JEPA's L1 plus VICReg's variance (weight 1) and covariance
(0.04) terms on the context tokens (jepa.variance_covariance): without them the features
collapse (effective rank 45 -> 21 in 1000 steps) and lose the direction of gravity.
Optimisation: batch 8, 1400 steps (ipe 140 x 10 epochs), lr 3e-3 (cosine from 2e-4 to 1e-5, one
warmup epoch). With it the pretrained encoder beats its random init on every probe and on
physics on seeds 0-4; batch 16 x 800 steps at lr 1e-3 lost gravity on seed 2, and lr 5e-3
collapsed rank (48 against 67 at 3e-3, batch 16). Times and figures per host: docs/demo.md.

    configs/demo.py        the demo
    configs/demo.py:test   a seconds-long setting for the end-to-end test
"""
import ml_collections

from vjepa_jax.recipes import base_config, mask_generator
from vjepa_jax.worlds.physics import WorldConfig


def get_config(arg=None):
    c = base_config()
    c.seed = 0
    c.model.update(variant='mini', img_size=64, num_frames=8, patch_size=8, tubelet_size=2,
                   pred_depth=2, pred_embed_dim=96, dtype='float32')
    per_step = (c.model.img_size // c.model.patch_size) ** 2
    steps = c.model.num_frames // c.model.tubelet_size
    future = mask_generator(1, 1.0, aspect_ratio=(1.0, 1.0), temporal_scale=(0.5, 0.5), max_temporal_keep=0.5,
                            index=0)
    future.update(num_context=steps // 2 * per_step, num_target=(steps - steps // 2) * per_step)  # whole halves
    c.mask.generators = ml_collections.ConfigDict(dict(future=future))
    c.loss.update(var_weight=1.0, cov_weight=0.04)  # anti-collapse; 0 / 0 is V-JEPA's loss
    # batch 8: also divides over the 8 CPU devices the tests simulate (configs/demo.py:test keeps it)
    c.data.update(datasets='physics_world', global_batch_size=8, frame_step=2, crop_scale=(0.6, 1.0),
                  flip=False,  # no flip: keep the world's handedness (left / right gravity)
                  decoded_cache_mb=512,  # the world's 400 videos decoded: 157 MB, decoded once each
                  uint8_clips=False)  # float clips, as docs/demo.md's figures were measured
    c.optim.update(ipe=140, epochs=10, warmup=1, ipe_scale=1.0, start_lr=2e-4, lr=3e-3, final_lr=1e-5,
                   ema=(0.99, 1.0))
    c.train.update(log_every=25, tensorboard=False)
    c.checkpoint.update(every_steps=250, keep_last=1, async_save=False)
    world = WorldConfig()  # the world's defaults (px, px/frame^2); the demo's world: demo.world
    c.demo = ml_collections.ConfigDict(dict(
        world=ml_collections.ConfigDict(dict(train=400, validation=160, pairs_per_kind=16, size=64,
                                             num_frames=32, seed=0, max_objects=world.max_objects,
                                             radius=(6.0, 10.0), occluder_width=22.0,  # larger objects (docs/demo.md)
                                             gravity=world.gravity, wall_prob=world.wall_prob)),
        facts=('num_objects', 'gravity', 'speed', 'collision'),  # probed latent facts (physics.FACTS)
        probe_epochs=8, probe_batch_size=16, probe_lr=(3e-3,), probe_weight_decay=(0.01,),
        voe_stride=1, voe_reduce='max', voe_mask_generator='future',  # the surprise test's mask token
        voe_context=0,  # context frames per surprise window (0: half the clip, as the future mask)
        voe_tokens='mean', voe_top_k=0,  # a step's surprise: mean over its tokens | mean of the top_k
    ))
    if arg == 'test':  # the end-to-end test: seconds, not minutes
        c.optim.update(ipe=3, epochs=2)
        c.train.log_every = 2
        c.checkpoint.every_steps = 100
        c.demo.world.update(train=8, validation=8, pairs_per_kind=1)
        c.demo.update(facts=('num_objects',), probe_epochs=1, probe_batch_size=4, probe_lr=(1e-3,))
    return c
