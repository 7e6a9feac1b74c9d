"""Two rooms (vjepa_jax/worlds/two_rooms.py), CPU-sized: random-exploration episodes, a small
V-JEPA encoder pretrained on their frames, the AC predictor trained on them, then closed-loop
planning to goal images (world_model/measure.py).

Frames 64 px; encoder 'mini' (dim 96, depth 4), patch 16 (4 x 4 tokens a frame), tubelet 2.
A model step is `frame_step` = 5 env steps (actions summed); windows of 4 frames, 2-step rollout.
"""
import ml_collections

from vjepa_jax.recipes import base_config, mask_generator, world_model_config


def pretrain_config(img_size=64, patch_size=16):
    """The encoder's V-JEPA pretraining on the episodes' frames (clips of 8 frames, every 2nd step)."""
    c = base_config()
    c.seed = 0
    c.model.update(variant='mini', img_size=img_size, num_frames=8, patch_size=patch_size, tubelet_size=2,
                   pred_depth=2, pred_embed_dim=96, dtype='float32')
    c.mask.generators = ml_collections.ConfigDict(dict(
        short=mask_generator(8, 0.15, index=0), long=mask_generator(2, 0.7, index=1)))
    c.loss.update(var_weight=1.0, cov_weight=0.04)  # anti-collapse on a small, repetitive world
    c.data.update(datasets='trajectories', global_batch_size=16, frame_step=2, crop_scale=(1.0, 1.0),
                  crop_ratio=(1.0, 1.0), flip=False, decoded_cache_mb=1024)
    c.optim.update(ipe=100, epochs=6, warmup=1, ipe_scale=1.0, start_lr=2e-4, lr=1e-3, final_lr=1e-5,
                   ema=(0.99, 1.0))
    c.train.update(log_every=50, tensorboard=False)
    c.checkpoint.update(every_steps=200, keep_last=1, async_save=False)
    return c


def get_config(arg=None):
    c = world_model_config()
    c.seed = 0
    c.env = ml_collections.ConfigDict(dict(name='two_rooms', episodes=300, steps=64, seed=0))
    c.pretrain = pretrain_config()
    c.encoder.model = ml_collections.ConfigDict(c.pretrain.model.to_dict())
    c.predictor.update(embed_dim=128, depth=4, num_heads=4, action_dim=2, remat_policy='none', dtype='float32')
    c.data.update(num_frames=4, frame_step=5, val_episodes=20, global_batch_size=32)
    c.optim.update(ipe=100, epochs=20, warmup=1, anneal=4, start_lr=1e-4, lr=1e-3, final_lr=0.0,
                   weight_decay=0.04, final_weight_decay=0.04)
    c.train.update(log_every=100, tensorboard=False)
    c.checkpoint.update(every_steps=500, keep_last=1, async_save=False)
    c.plan = ml_collections.ConfigDict(dict(
        goals=50, goal_seed=10_000,        # held-out tasks: reset seeds goal_seed + i (episodes use seed + i)
        horizon=2, model_steps=20, energy='l1',
        cem=ml_collections.ConfigDict(dict(samples=256, elites=16, iterations=6, momentum_mean=0.15,
                                           momentum_std=0.15, init_std=1.0)),
        gradient=ml_collections.ConfigDict(dict(restarts=16, steps=30, learning_rate=0.1)),
    ))
    if arg == 'test':
        c.env.update(episodes=6, steps=20)
        c.pretrain.optim.update(ipe=2, epochs=2)
        c.data.update(val_episodes=2, global_batch_size=4)
        c.optim.update(ipe=3, epochs=2, anneal=1)
        c.train.log_every = 2
        c.plan.update(goals=2, model_steps=2, cem=dict(samples=16, elites=4, iterations=2),
                      gradient=dict(restarts=2, steps=2))
    return c
