"""A tiny V-JEPA for CPU: 8 frames x 64 px, patch 8 (4 x 8 x 8 = 256 tokens), micro ViT
(dim 96, depth 2, 3 heads), predictor depth 2 / dim 48, batch 8, float32. Same recipe as
ViT-L/16 otherwise, with schedules shrunk to the run length."""
from vjepa_jax.recipes import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.model.update(variant='micro', img_size=64, num_frames=8, patch_size=8, tubelet_size=2,
                   pred_depth=2, pred_embed_dim=48, dtype='float32')
    c.data.global_batch_size = 8
    c.optim.update(ipe=50, epochs=6, warmup=1, ipe_scale=1.25, start_lr=2e-4, lr=1e-3, final_lr=1e-6)
    c.train.log_every = 10
    return c
