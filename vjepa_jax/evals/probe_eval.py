"""Frozen-feature classification: attentive probes trained (probe_trainer.GridProbe) on a frozen
encoder's features and evaluated (video and image protocols). The command line is
evals/classification.py.

The frozen encoder (a training or converted workdir's EMA target encoder) encodes every clip
and view under jit; with features.cache each split is encoded once into ArrayRecord files.
Evaluation averages the softmax over views; top-1 / top-5 per split and head, a confusion
summary, metrics.jsonl, results.json, curves.png; the best head is saved as a probe params
checkpoint (pretrained.load_probe).

    results = probe_eval.run(config, workdir)          # config: configs/eval/*.py
"""
from __future__ import annotations

import json
import os
import shutil
import time

import grain
import jax
import numpy as np
from flax import nnx

from vjepa_jax.evals import features, views
from vjepa_jax.evals.probe_trainer import HEAD, GridProbe, grid_points, view_probs


# ----------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------
def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """probs (..., B, C), labels (B,) -> correct counts (...,) with the label in the top k."""
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1)[..., :k]
    return (top == labels[:, None]).any(-1).sum(-1)


def evaluate(predict, batches, encode) -> dict:
    """Top-1 / top-5 per head, and each record's prediction per head, over an evaluation split.
    predict: tokens (B, V, L, D) -> view-averaged probabilities (H, B, C)."""
    top1 = top5 = 0
    preds, labels = [], []
    for batch in batches:
        valid = np.asarray(batch['valid'], bool)
        probs = predict(encode(batch))[:, valid]  # (H, b, C)
        y = np.asarray(batch['label'])[valid]
        top1 = top1 + topk_correct(probs, y, 1)
        top5 = top5 + topk_correct(probs, y, 5)
        preds.append(probs.argmax(-1))
        labels.append(y)
    n = sum(len(y) for y in labels)
    return {'top1': 100.0 * np.asarray(top1) / max(n, 1), 'top5': 100.0 * np.asarray(top5) / max(n, 1), 'count': n,
            'predictions': np.concatenate(preds, axis=1), 'labels': np.concatenate(labels)}


def confusion_summary(predictions: np.ndarray, labels: np.ndarray, num_classes: int, top: int = 10) -> dict:
    """Per-class accuracy extremes and the most frequent (true -> predicted) confusions."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(1)
    seen = np.flatnonzero(support)
    accuracy = np.diag(confusion)[seen] / support[seen]
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = np.dstack(np.unravel_index(np.argsort(-off, axis=None)[:top], off.shape))[0]
    return {'worst_classes': [[int(seen[i]), float(accuracy[i])] for i in np.argsort(accuracy)[:top]],
            'best_classes': [[int(seen[i]), float(accuracy[i])] for i in np.argsort(-accuracy)[:top]],
            'top_confusions': [[int(t), int(p), int(off[t, p])] for t, p in pairs if off[t, p] > 0]}


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------
def load_frozen_encoder(config):
    """The encoder named by config.encoder: a workdir's target encoder, or a random init."""
    from vjepa_jax import pretrained
    from vjepa_jax.config import UsageError, load_config
    enc = config.encoder
    model_config = load_config(enc.config, {f'model.{k}': v for k, v in enc.model_overrides.items()})
    if not (enc.workdir or enc.random_init):
        raise UsageError('config.encoder: set workdir=DIR (a training or converted workdir) or random_init=True')
    encoder = pretrained.encoder_for_evaluation(model_config, enc.workdir, enc.which, enc.random_init, config.seed)
    return features.FrozenEncoder(encoder), model_config


def view_config(config) -> views.ViewConfig:
    d = config.data
    return views.ViewConfig(frames_per_clip=d.frames_per_clip, frame_step=d.frame_step, num_segments=d.num_segments,
                            num_views=d.num_views, size=d.resolution, crop_scale=tuple(d.crop_scale), flip=d.flip)


def sources(config):
    from vjepa_jax.data.pipeline import TfdsSource
    d = config.data
    return (TfdsSource(d.dataset, d.data_dir or None, d.train_split),
            TfdsSource(d.dataset, d.data_dir or None, d.val_split))


def cached_batches(path: str, batch_size: int, *, training: bool, seed: int, epochs: int = 1, labels=None):
    """Batches of a feature cache, shuffled per epoch for training, padded ('valid') for eval.
    labels: (records,) per dataset record index, replacing the cached label (another key)."""
    source = features.CacheSource(path)
    n = len(source)

    def read(i):
        record = source[i]
        return record if labels is None else {**record, 'label': np.int32(labels[int(record['index'])])}
    if training:
        ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(epochs).map(read)
        return ds.batch(batch_size, drop_remainder=True).to_iter_dataset()
    pad = -n % batch_size
    ds = grain.MapDataset.range(n + pad).map(lambda i: {**read(min(i, n - 1)), 'valid': np.int32(i < n)})
    return ds.batch(batch_size).to_iter_dataset()


def memory_batches(arrays: dict, batch_size: int):
    """Evaluation batches of an in-memory cache (features.load_cache), padded ('valid')."""
    n = len(arrays['label'])
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size)
        idx = np.minimum(rows, n - 1)
        yield {'tokens': arrays['tokens'][idx], 'label': arrays['label'][idx], 'valid': (rows < n).astype(np.int32)}


def memory_epochs(arrays: dict, batch_size: int, epochs: int, seed: int):
    """Training epochs of an in-memory cache: (tokens (S, B, V, L, D), labels (S, B)) per epoch,
    a fresh shuffle each, S = len // B full batches."""
    rng = np.random.default_rng(seed)
    n = len(arrays['label'])
    for _ in range(epochs):
        order = rng.permutation(n)[:n // batch_size * batch_size].reshape(-1, batch_size)
        yield arrays['tokens'][order], arrays['label'][order]


def cache_key(config) -> dict:
    """What a feature cache depends on (not the label): a cache with the same key is reused."""
    data = {k: v for k, v in config.data.to_dict().items() if k not in ('label_key', 'num_classes')}
    return {'encoder': config.encoder.to_dict(), 'data': data, 'seed': config.seed}


def record_labels(source, key: str) -> np.ndarray:
    """(records,) the `key` field of every record of a dataset."""
    return np.array([int(source[i][key]) for i in range(len(source))], np.int64)


def plot_curves(rows: list, points: list, path: str) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r['epoch'] for r in rows]
    for h, (lr, wd) in enumerate(points):
        ax1.plot(epochs, [r['train_loss'][h] for r in rows], label=f'lr {lr:g} wd {wd:g}')
        ax2.plot(epochs, [r['val_top1'][h] for r in rows], label=f'lr {lr:g} wd {wd:g}')
    ax1.set(xlabel='epoch', ylabel='train loss')
    ax2.set(xlabel='epoch', ylabel='validation top-1 (%)')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(config, workdir: str, log=print, frozen: features.FrozenEncoder | None = None) -> dict:
    """Train the grid of probes on the frozen encoder's features and evaluate; -> results dict.
    frozen: an encoder to use instead of config.encoder's (several runs then share its compile)."""
    from vjepa_jax import pretrained, validate
    validate.eval_config(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    frozen = frozen or load_frozen_encoder(config)[0]
    train_source, val_source = sources(config)
    vcfg, o, d = view_config(config), config.optim, config.data
    batch = o.batch_size
    ipe = views.steps_per_epoch(len(train_source), batch)
    total = ipe * o.epochs
    points = grid_points(o)
    spec = {'embed_dim': frozen.embed_dim, 'num_heads': config.probe.num_heads, 'depth': config.probe.depth,
            'style': config.probe.style, 'heads': [[HEAD, d.num_classes]]}
    grid = GridProbe(spec, points, config.seed, o, total, int(o.warmup * ipe), config.probe.attention_impl)

    def encode(b):
        return b['tokens'] if 'tokens' in b else frozen(b['clips'])

    def val_batches():
        if memory:
            return memory_batches(memory['validation'], batch)
        if config.features.cache:
            return cached_batches(cache['validation'], batch, training=False, seed=config.seed,
                                  labels=labels['validation'])
        return views.probe_dataset(val_source, vcfg, training=False, batch_size=batch, seed=config.seed,
                                   num_workers=d.num_workers, label_key=d.label_key)

    cache, labels, memory, skipped = {}, {}, {}, 0
    if config.features.cache:  # one pass of the encoder per split; probes then train from disk
        folder = config.features.cache_dir or os.path.join(workdir, 'features')
        key_path = os.path.join(folder, 'key.json')
        key = json.loads(json.dumps(cache_key(config)))
        reuse = os.path.exists(key_path) and json.load(open(key_path)) == key
        for split, source, training in (('train', train_source, True), ('validation', val_source, False)):
            path = os.path.join(folder, f'{split}.array_record')
            cache[split] = path
            labels[split] = record_labels(source, d.label_key)
            if reuse:
                log(f'reusing the {split} feature cache {path}')
                continue
            it = views.probe_dataset(source, vcfg, training=False, augment=training, batch_size=batch,
                                     seed=config.seed, num_workers=d.num_workers, label_key=d.label_key)
            t0 = time.time()
            n, replaced = features.write_cache(path, ({**b, 'tokens': np.asarray(frozen(b['clips']))} for b in it))
            skipped += replaced
            log(f'cached {n} {split} feature records in {time.time() - t0:.1f}s ({replaced} unreadable replaced): '
                f'{path}')
        with open(key_path, 'w') as f:
            json.dump(key, f)
        if config.features.in_memory:  # each epoch one jitted scan over its batches
            for split, path in cache.items():
                arrays = features.load_cache(path)
                memory[split] = {'tokens': arrays['tokens'], 'label': labels[split][arrays['index']].astype(np.int32)}
            train_iter = ({'tokens': t, 'label': y} for t, y in memory_epochs(memory['train'], batch, o.epochs,
                                                                               config.seed))
        else:
            train_iter = cached_batches(cache['train'], batch, training=True, seed=config.seed, epochs=o.epochs,
                                        labels=labels['train'])
    else:
        train_iter = views.probe_dataset(train_source, vcfg, training=True, batch_size=batch, seed=config.seed,
                                         epochs=o.epochs, num_workers=d.num_workers, label_key=d.label_key)

    from vjepa_jax.metrics import Progress
    writer = open(os.path.join(workdir, 'metrics.jsonl'), 'w')  # one line per epoch, a value per head
    progress = Progress(total, batch)
    rows, epoch_loss, epoch_correct, seen = [], 0.0, 0, 0
    step = -1
    for b in train_iter:  # a batch, or (in memory) an epoch of batches: (S, B, ...)
        if memory:
            losses, corrects = grid.train_steps(b['tokens'], b['label'])
        else:
            losses, corrects = (x[None] for x in grid.train_step(encode(b), b['label']))
            skipped += int(np.sum(b.get('skipped', 0)))
        for loss, correct in zip(losses, corrects):
            step += 1
            epoch_loss, epoch_correct, seen = epoch_loss + loss, epoch_correct + correct, seen + batch
            if (step + 1) % config.log_every == 0 or step == 0:
                progress.update(step + 1, {'loss': float(loss.min())})
            if (step + 1) % ipe == 0:
                epoch = (step + 1) // ipe
                result = evaluate(grid.predict, val_batches(), encode)
                row = {'epoch': epoch, 'step': step + 1, 'train_loss': (epoch_loss / ipe).tolist(),
                       'train_top1': (100.0 * epoch_correct / seen).tolist(), 'val_top1': result['top1'].tolist(),
                       'val_top5': result['top5'].tolist(), 'skipped_records': skipped}
                writer.write(json.dumps(row) + '\n')
                writer.flush()
                rows.append(row)
                best = int(np.argmax(result['top1']))
                log(f'epoch {epoch}/{o.epochs}: best head lr {points[best][0]:g} wd {points[best][1]:g} '
                    f'val top-1 {result["top1"][best]:.2f} top-5 {result["top5"][best]:.2f}')
                epoch_loss, epoch_correct, seen = 0.0, 0, 0
    writer.close()
    final = evaluate(grid.predict, val_batches(), encode)
    best = int(np.argmax(final['top1']))
    if memory:
        train_batches = memory_batches(memory['train'], batch)
    elif cache:
        train_batches = cached_batches(cache['train'], batch, training=False, seed=config.seed, labels=labels['train'])
    else:
        train_batches = views.probe_dataset(train_source, vcfg, training=False, batch_size=batch, seed=config.seed,
                                            num_workers=d.num_workers, label_key=d.label_key)
    train_eval = evaluate(grid.predict, train_batches, encode)
    results = {
        'best': {'lr': points[best][0], 'weight_decay': points[best][1], 'head': best},
        'splits': {'train': {'top1': float(train_eval['top1'][best]), 'top5': float(train_eval['top5'][best]),
                             'count': train_eval['count']},
                   'validation': {'top1': float(final['top1'][best]), 'top5': float(final['top5'][best]),
                                  'count': final['count']}},
        'grid': [{'lr': lr, 'weight_decay': wd, 'val_top1': float(final['top1'][h]), 'val_top5': float(final['top5'][h])}
                 for h, (lr, wd) in enumerate(points)],
        'confusion': confusion_summary(final['predictions'][best], final['labels'], d.num_classes),
        'chance_top1': 100.0 / d.num_classes, 'skipped_records': skipped,
    }
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    if rows:
        plot_curves(rows, points, os.path.join(workdir, 'curves.png'))
    probe_dir = os.path.join(workdir, 'probe')
    shutil.rmtree(probe_dir, ignore_errors=True)  # a rerun in this workdir replaces its probe
    pretrained.save_params(probe_dir, {'probe': nnx.to_pure_dict(grid.head_params(best))},
                           {'kind': 'probe', 'spec': spec, 'lr': points[best][0], 'weight_decay': points[best][1],
                            'results': results['splits'], 'encoder': config.encoder.to_dict()})
    log(grid_table(results))
    return results


def grid_table(results: dict) -> str:
    lines = ['| lr | weight decay | val top-1 | val top-5 |', '| --- | --- | --- | --- |']
    for row in results['grid']:
        lines.append(f"| {row['lr']:g} | {row['weight_decay']:g} | {row['val_top1']:.2f} | {row['val_top5']:.2f} |")
    s = results['splits']
    lines.append(f"best: lr {results['best']['lr']:g} wd {results['best']['weight_decay']:g}; "
                 f"train top-1 {s['train']['top1']:.2f} / validation top-1 {s['validation']['top1']:.2f} "
                 f"top-5 {s['validation']['top5']:.2f} (chance {results['chance_top1']:.2f})")
    return '\n'.join(lines)


def evaluate_checkpoint(config, probe_dir: str) -> dict:
    """Evaluation only: a saved probe on the validation split."""
    from vjepa_jax import pretrained
    frozen, _ = load_frozen_encoder(config)
    probe, meta = pretrained.load_probe(probe_dir)
    _, val_source = sources(config)
    graphdef, params = nnx.split(probe)

    predict = jax.jit(lambda params, tokens: view_probs(graphdef, params, tokens)[None])

    batches = views.probe_dataset(val_source, view_config(config), training=False, batch_size=config.optim.batch_size,
                                  seed=config.seed, label_key=config.data.label_key)
    result = evaluate(lambda tokens: np.asarray(predict(params, tokens)), batches,
                      lambda b: frozen(b['clips']))
    return {'top1': float(result['top1'][0]), 'top5': float(result['top5'][0]), 'count': result['count']}
