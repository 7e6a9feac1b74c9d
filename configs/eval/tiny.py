"""A CPU-sized probe run: the tiny pretraining config's encoder (8 frames x 64 px), 2 segments
x 2 views, a 2 x 2 lr x wd grid, batch 8, no flip (the synthetic motion set's classes include
left and right). Point it at a dataset with --config.data.dataset,
--config.data.data_dir and --config.data.num_classes, and at weights with
--config.encoder.workdir (or random_init=True)."""
from vjepa_jax.recipes import eval_config


def get_config():
    c = eval_config()
    c.log_every = 5
    c.encoder.config = 'configs/pretrain/tiny.py'
    c.data.update(dataset='video_csv', num_classes=4, frames_per_clip=8, frame_step=2, num_segments=2, num_views=2,
                  resolution=64, flip=False)
    c.probe.update(style='vjepa1', depth=1, num_heads=3)
    c.optim.update(epochs=4, batch_size=8, lr=(1e-3, 3e-3), weight_decay=(0.01, 0.1))
    return c
