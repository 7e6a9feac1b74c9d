"""V-JEPA 2 recipes (facebookresearch/vjepa2 configs/train/*), shared by configs/pretrain/vjepa2_*.py."""
from vjepa_jax.config import base_config

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
