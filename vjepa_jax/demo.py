"""The end-to-end demo: a physics world, V-JEPA pretraining, probes, intuitive physics, a report.

    python -m vjepa_jax.demo --workdir=workdir/demo [--config=configs/demo.py] [--seed=0]
        [--config.optim.lr=1e-3 ...]   (any config field; an unknown key is a one-line error)

1. world     worlds/physics_tfds.build_world: videos with latent facts + violation pairs, built
             into the physics_world TFDS dataset (kept and reused when it exists)
2. pretrain  train.train on that dataset (resumes; skipped when finished)
3. probes    one attentive probe per latent fact (physics.FACTS) on the frozen pretrained
             encoder AND on a randomly initialised one (the same init the training started from)
4. physics   evals/intuitive_physics on the world's pairs, for both models
5. report    WORKDIR/report.md + loss.png, masks.png, probes.png, surprise_*.png, pair.png;
             the summary table is printed. Deterministic for a given seed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before numpy/scipy load: see vjepa_jax/main.py

import numpy as np
from absl import flags

from vjepa_jax import config as config_lib
from vjepa_jax.config import UsageError

DEFAULT_CONFIG = 'configs/demo.py'  # from the repository root (config.repo_path)
MODELS = ('pretrained', 'random')

FLAGS = flags.FLAGS
if __name__ == '__main__':
    _CONFIG = config_lib.define_config_flag(DEFAULT_CONFIG, 'the demo config FILE[:arg] (default configs/demo.py)')
    config_lib.define_workdir_flag('workdir/demo', 'where the world, runs, PNGs and report.md go')
    flags.DEFINE_integer('seed', None, 'the world and model seed (default: the config\'s, 0)')


def world_config(config):
    from vjepa_jax.worlds import physics
    fields = {f.name for f in dataclasses.fields(physics.WorldConfig)}  # the rest: the world's defaults
    try:
        return physics.WorldConfig(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                                      for k, v in config.demo.world.items() if k in fields})
    except ValueError as e:  # WorldConfig's own checks, said with the config's key
        raise ValueError(f'demo.world.{e}') from None


def make_world(config, workdir: str, log=print) -> str:
    """Write the world and build its TFDS dataset (data.data_dir); -> the violation pairs list."""
    from vjepa_jax.worlds import physics_tfds
    w = config.demo.world
    pairs, config.data.data_dir = physics_tfds.build_world(
        os.path.join(workdir, 'world'), world_config(config), {'train': w.train, 'validation': w.validation},
        w.pairs_per_kind, seed=w.seed, log=log)
    return pairs


def pretrain(config, workdir: str, log=print) -> str:
    from vjepa_jax import checkpoint, train
    out = os.path.join(workdir, 'pretrain')
    total = config.train.num_steps or config.optim.ipe * config.optim.epochs
    ckpt = checkpoint.Checkpointer(os.path.join(out, 'checkpoints'))
    done = ckpt.latest_step()
    ckpt.close()
    if done is not None and done >= total:
        log(f'pretraining: finished earlier ({done} steps in {out})')
    else:
        done = int(train.train(config, out, log)['step'])
        if done < total:  # SIGTERM: the checkpoint is saved; probing a half-trained encoder would mislead
            raise SystemExit(f'pretraining stopped at step {done} of {total} (SIGTERM); rerun the same command '
                             f'to resume')
    return out


def models(config, pretrain_dir: str) -> dict:
    """{'pretrained': (encoder, predictor, target), 'random': the initialisation training started from}."""
    from vjepa_jax import pretrained
    return {'pretrained': pretrained.load_jepa(pretrain_dir, config),
            'random': pretrained.build_jepa(config, config.seed)}


def probe_config(config, fact: str, classes: int, name: str, pretrain_dir: str, workdir: str):
    """Probe recipe for one fact: 2 segments x 8 frames (step 2) cover the 32-frame video; no
    flip (left/right gravity is a label); crops keep >= 80 % of the frame (object counts)."""
    from vjepa_jax.recipes import eval_config
    c = eval_config()
    c.seed = config.seed
    c.log_every = 1000
    c.encoder.update(workdir=pretrain_dir if name == 'pretrained' else '', random_init=name == 'random')
    c.data.update(dataset='physics_world', data_dir=config.data.data_dir, num_classes=classes, label_key=fact,
                  frames_per_clip=config.model.num_frames, frame_step=config.data.frame_step, num_segments=2,
                  num_views=1, resolution=config.model.img_size, crop_scale=(0.8, 1.0), flip=False)
    c.probe.update(style='vjepa1', depth=1, num_heads=3)
    d = config.demo
    c.optim.update(epochs=d.probe_epochs, batch_size=d.probe_batch_size, lr=tuple(d.probe_lr),
                   weight_decay=tuple(d.probe_weight_decay))
    c.features.update(cache=True, in_memory=True,  # encoded once, shared by the facts; trained from memory
                      cache_dir=os.path.join(workdir, 'probes', name, 'features'))
    return c


def run_probes(config, workdir: str, networks: dict, pretrain_dir: str, log=print) -> dict:
    """{model: {fact: validation top-1 (%)}} (probe outputs in WORKDIR/probes/<model>/<fact>)."""
    from vjepa_jax.worlds.physics import FACTS
    from vjepa_jax.evals import features, probe_eval
    unknown = sorted(set(config.demo.facts) - set(FACTS))
    if unknown:
        raise UsageError(f'demo.facts {unknown}: choose among {list(FACTS)}')
    out = {}
    for name in MODELS:
        frozen = features.FrozenEncoder(networks[name][2])  # the target encoder, as evaluations use
        out[name] = {}
        for fact in config.demo.facts:
            classes = FACTS[fact]
            t0 = time.time()
            result = probe_eval.run(probe_config(config, fact, classes, name, pretrain_dir, workdir),
                                        os.path.join(workdir, 'probes', name, fact), log=lambda *_: None,
                                        frozen=frozen)
            out[name][fact] = result['splits']['validation']['top1']
            log(f'probe {name:10s} {fact:12s} validation top-1 {out[name][fact]:5.1f}% '
                f'(chance {100 / classes:.1f}%, {time.time() - t0:.0f}s)')
    return out


def feature_ranks(workdir: str) -> dict:
    """{model: effective rank (jepa.effective_rank) of its frozen validation tokens}: the probe
    feature caches, every token of every video (out of the embedding width)."""
    import jax.numpy as jnp

    from vjepa_jax import jepa
    from vjepa_jax.evals import features
    out = {}
    for name in MODELS:
        source = features.CacheSource(os.path.join(workdir, 'probes', name, 'features', 'validation.array_record'))
        tokens = np.stack([source[i]['tokens'] for i in range(len(source))])  # (videos, V, L, D)
        out[name] = float(jepa.effective_rank(jnp.asarray(tokens)))
    return out


def run_physics(config, workdir: str, networks: dict, pairs: str, log=print) -> dict:
    """{model: intuitive_physics summary} (outputs in WORKDIR/physics/<model>)."""
    from vjepa_jax import masks
    from vjepa_jax.evals import intuitive_physics as ip
    m, d = config.model, config.demo
    cfg = ip.SurpriseConfig(window=m.num_frames, context=d.voe_context or m.num_frames // 2, stride=d.voe_stride,
                            frame_step=config.data.frame_step, size=m.img_size, reduce=d.voe_reduce,
                            tokens=d.voe_tokens, top_k=d.voe_top_k,
                            mask_index=masks.generator_names(config.mask).index(d.voe_mask_generator))
    # all windows of a world video in one call, none padded (9, not 16 with 7 padded); the frame
    # count after frame_step as ip.load_frames takes it
    windows = len(ip.window_starts(len(range(0, d.world.num_frames, config.data.frame_step)), cfg))
    cfg = dataclasses.replace(cfg, batch_windows=windows)
    out = {}
    for name in MODELS:
        t0 = time.time()
        out[name] = ip.run(ip.SurpriseModel(*networks[name], cfg), pairs, os.path.join(workdir, 'physics', name),
                           name, log=lambda *_: None)
        log(f'intuitive physics {name:10s} pairwise accuracy {out[name]["all"]["accuracy"]:5.1f}% '
            f'({out[name]["all"]["groups"]} pairs and quadruplets, {time.time() - t0:.0f}s)')
    return out


# ----------------------------------------------------------------------------------------
# Pictures and the report
# ----------------------------------------------------------------------------------------
def plot_masks(config, path: str) -> str:
    """A world clip's time steps with each mask generator's context (clear), targets (red) and
    dropped tokens (grey) for the first sample of a batch."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from vjepa_jax import masks
    from vjepa_jax.worlds import physics
    m = config.model
    grid = (m.num_frames // m.tubelet_size, m.img_size // m.patch_size, m.img_size // m.patch_size)
    sampler = masks.make_sampler(config, grid)
    frames = physics.sample_video(np.random.default_rng(config.seed), world_config(config))[0]
    step = config.data.frame_step * m.tubelet_size
    names = masks.generator_names(config.mask)
    fig, axes = plt.subplots(len(names), grid[0], figsize=(2.0 * grid[0], 2.1 * len(names)), squeeze=False)
    for g, (ctx, tgt) in enumerate(sampler(0, 1)):
        state = np.full(int(np.prod(grid)), 2)  # 0 context, 1 target, 2 neither
        state[ctx[0]], state[tgt[0]] = 0, 1
        state = state.reshape(grid)
        for t in range(grid[0]):
            image = frames[min(t * step, len(frames) - 1)].astype(np.float32) / 255
            overlay = np.kron(state[t], np.ones((m.patch_size, m.patch_size)))[..., None]
            image = np.where(overlay == 1, 0.45 * image + 0.55 * np.array([1.0, 0.1, 0.1]), image)
            image = np.where(overlay == 2, 0.25 * image + 0.3, image)
            ax = axes[g, t]
            ax.imshow(image, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if g == 0:
                ax.set_title(f'time step {t}', fontsize=8)
            if t == 0:
                ax.set_ylabel(f'{names[g]}\n{len(ctx[0])} ctx / {len(tgt[0])} tgt', fontsize=8)
    fig.suptitle('masks over a clip: clear = context, red = predicted targets, grey = unused', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_probes(probes: dict, path: str) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from vjepa_jax.worlds.physics import FACTS
    facts = list(probes[MODELS[0]])
    x = np.arange(len(facts))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, name in enumerate(MODELS):
        ax.bar(x + (i - 0.5) * 0.38, [probes[name][f] for f in facts], 0.38, label=name)
    ax.scatter(x, [100 / FACTS[f] for f in facts], color='k', marker='_', s=400, label='chance', zorder=3)
    ax.set_xticks(x, facts)
    ax.set_ylabel('validation top-1 (%)')
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    ax.set_title('attentive probes on frozen features: latent facts of the world', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pair(config, pairs: str, path: str, kind: str = 'vanish') -> str:
    """The first pair of `kind`: possible (top) and impossible (bottom) frames around the break."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from vjepa_jax.data import decode
    from vjepa_jax.evals.intuitive_physics import read_pairs
    pair = next((p for p in read_pairs(pairs) if p['property'] == kind), read_pairs(pairs)[0])
    b = pair['break_frame']
    shown = [max(0, min(b + d, config.demo.world.num_frames - 1)) for d in (-6, -3, 0, 3, 6, 9)]
    fig, axes = plt.subplots(2, len(shown), figsize=(1.8 * len(shown), 4.0))
    for row, which in enumerate(('possible', 'impossible')):
        frames = decode.decode_frames(open(pair[which], 'rb').read(), np.array(shown), name=pair[which])
        for ax, f, t in zip(axes[row], frames, shown):
            ax.imshow(f)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f'frame {t}' + (' (break)' if t == b else ''), fontsize=8)
        axes[row, 0].set_ylabel(which, fontsize=9)
    fig.suptitle(f'a violation pair: {pair["property"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_table(probes: dict, physics_summary: dict, ranks: dict) -> str:
    from vjepa_jax.worlds.physics import FACTS
    lines = ['| measure | pretrained | random init | chance |', '| --- | --- | --- | --- |',
             f'| effective rank of the validation tokens | {ranks["pretrained"]:.1f} | {ranks["random"]:.1f} | - |']
    for fact in probes[MODELS[0]]:
        classes = FACTS[fact]
        lines.append(f'| probe: {fact} (top-1 %) | {probes["pretrained"][fact]:.1f} | {probes["random"][fact]:.1f} '
                     f'| {100 / classes:.1f} |')
    for prop in physics_summary['pretrained']:
        lines.append(f'| physics: {prop} (pairwise %) | {physics_summary["pretrained"][prop]["accuracy"]:.1f} '
                     f'| {physics_summary["random"][prop]["accuracy"]:.1f} | 50.0 |')
    return '\n'.join(lines)


def write_report(config, workdir: str, probes: dict, physics_summary: dict, ranks: dict, pairs: str,
                 seconds: dict) -> str:
    import shutil
    from vjepa_jax.evals.intuitive_physics import plot_surprise
    shutil.copy(os.path.join(workdir, 'pretrain', 'loss.png'), os.path.join(workdir, 'loss.png'))
    plot_masks(config, os.path.join(workdir, 'masks.png'))
    plot_probes(probes, os.path.join(workdir, 'probes.png'))
    plot_pair(config, pairs, os.path.join(workdir, 'pair.png'))
    for name in MODELS:
        results = json.load(open(os.path.join(workdir, 'physics', name, 'results.json')))
        plot_surprise(results, os.path.join(workdir, f'surprise_{name}.png'), f'{name}: surprise over time')
    from vjepa_jax.metrics import read_jsonl
    rows = read_jsonl(os.path.join(workdir, 'pretrain', 'metrics.jsonl'))
    table = summary_table(probes, physics_summary, ranks)
    w = config.demo.world
    text = f"""# vjepa-jax demo report (seed {config.seed})

A V-JEPA ({config.model.variant} ViT, {config.model.num_frames} frames x {config.model.img_size} px) pretrained
for {rows[-1]['step'] + 1 if rows else 0} steps (batch {config.data.global_batch_size}) on {w.train} unlabelled
videos of the synthetic physics world; loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}.
Probes: attentive probes on the frozen target encoder, trained on {w.train} and scored on {w.validation}
held-out videos. Physics: {w.pairs_per_kind} violation pairs per property; a pair is right when the possible
video is less surprising ({config.demo.voe_reduce} surprise over windows) than its impossible twin;
a vanish quadruplet (+ a never-there / appearing pair) when its impossible videos are, summed; a tie (both
maxima in the frames the twins share) counts half.
The random init is the initialisation the pretraining started from. Effective rank: RankMe (exp of the
entropy of the singular values) over every validation token of the frozen target encoder, out of its
width; a fall means dimensional collapse (loss.png, right: the training targets' rank per step).

{table}

Time: {', '.join(f'{k} {v:.0f}s' for k, v in seconds.items())}.

![loss](loss.png)
![masks](masks.png)
![probes](probes.png)
![a violation pair](pair.png)
![surprise, pretrained](surprise_pretrained.png)
![surprise, random init](surprise_random.png)
"""
    path = os.path.join(workdir, 'report.md')
    with open(path, 'w') as f:
        f.write(text)
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
        json.dump({'seed': config.seed, 'probes': probes, 'physics': physics_summary, 'effective_rank': ranks,
                   'seconds': seconds}, f, indent=1)
    return path


def run(config, workdir: str, log=print) -> dict:
    """All five stages; -> {'probes', 'physics', 'report'}."""
    os.makedirs(workdir, exist_ok=True)
    seconds, t0 = {}, time.time()
    pairs = make_world(config, workdir, log)
    seconds['world'] = time.time() - t0
    t0 = time.time()
    pretrain_dir = pretrain(config, workdir, log)
    seconds['pretraining'] = time.time() - t0
    networks = models(config, pretrain_dir)
    t0 = time.time()
    probes = run_probes(config, workdir, networks, pretrain_dir, log)
    ranks = feature_ranks(workdir)
    seconds['probes'] = time.time() - t0
    t0 = time.time()
    physics_summary = run_physics(config, workdir, networks, pairs, log)
    seconds['physics'] = time.time() - t0
    report = write_report(config, workdir, probes, physics_summary, ranks, pairs, seconds)
    log(summary_table(probes, physics_summary, ranks))
    log(f'report: {report}')
    return {'probes': probes, 'physics': physics_summary, 'effective_rank': ranks, 'report': report}


def main(argv):
    import jax
    jax.config.update('jax_compilation_cache_dir', os.path.join(os.path.abspath(FLAGS.workdir), 'jax_cache'))
    config = _CONFIG.value
    if FLAGS.seed is not None:
        config.seed = config.demo.world.seed = FLAGS.seed
    try:
        run(config, FLAGS.workdir)
    except (ValueError, KeyError) as e:
        raise SystemExit(f'error: {e}')
    return 0


if __name__ == '__main__':
    config_lib.run(main)
