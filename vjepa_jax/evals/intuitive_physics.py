"""Intuitive physics by violation of expectation (Garrido et al. 2025), for any dataset of
possible / impossible video pairs (the synthetic world's, IntPhys-style data, your own).

For each video, windows of `window` frames slide by `stride`; in each window the first
`context` frames are the context and the rest the targets:
    z = predictor(encoder(window, ctx), ctx, tgt)          (the pretraining predictor)
    h = layer_norm(target_encoder(window))[tgt]           (the pretraining targets)
    surprise(window) = mean |z - h|                        (per target time step too)
A video's score is the max (or mean) surprise over its windows; a pair is right when the
possible video scores lower than the impossible one. Pairs that share a group are judged
together, as IntPhys scores its quadruplets (2 possible + 2 impossible videos that balance
what is shown): right when the impossible videos' summed score exceeds the possible ones'.
Accuracy (over groups; a pair without a group is its own) is reported per property.

Pairs list ('pairs.csv'): one pair per line, space separated, paths relative to the list:
    possible impossible property [break_frame [group]]        (break_frame -1: unknown)
Each path is a video file or a folder of frame images (IntPhys scenes: the folder of PNGs).

    python -m vjepa_jax.evals.intuitive_physics --pairs=world/voe/pairs.csv --workdir=runs/voe \\
        --config=configs/demo.py --checkpoint=runs/demo/pretrain        # or --random_init
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

from vjepa_jax import config as config_lib
from vjepa_jax import jepa
from vjepa_jax.data import decode, transforms

FLAGS = flags.FLAGS
_CONFIG = None  # the --config flag, when run as a tool
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


@dataclasses.dataclass(frozen=True)
class SurpriseConfig:
    window: int = 16         # frames per window (the encoder's num_frames)
    context: int = 8         # leading context frames per window (a multiple of the tubelet)
    stride: int = 2          # frames between window starts
    frame_step: int = 1      # use every frame_step-th frame of a video
    size: int = 224          # frames: short side to size, centre crop
    mask_index: int = 0      # the predictor's learned mask token to use
    reduce: str = 'max'      # a video's score: 'max' | 'mean' surprise over windows
    tokens: str = 'mean'     # a target step's surprise: 'mean' over its tokens | 'top_k' largest (reduce_tokens)
    top_k: int = 0           # tokens: 'top_k': how many of a step's token errors to average
    batch_windows: int = 8   # windows per jitted call (padded: one compile per model)


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------
def read_pairs(path: str) -> list:
    """-> [{'possible', 'impossible' (paths), 'property', 'break_frame' (-1: unknown),
    'group' (the line number when none is named)}]."""
    line_format = '"possible impossible property [break_frame [group]]"'
    if not os.path.exists(path):
        raise FileNotFoundError(f'pairs list {path} not found: pass --pairs=FILE with {line_format} lines')
    base, pairs = os.path.dirname(os.path.abspath(path)), []
    for n, line in enumerate(open(path)):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4, 5) or (len(parts) >= 4 and not parts[3].lstrip('-').isdigit()):
            raise ValueError(f'{path}:{n + 1}: expected {line_format}, got {line.strip()!r}')
        full = [p if os.path.isabs(p) else os.path.join(base, p) for p in parts[:2]]
        pairs.append({'possible': full[0], 'impossible': full[1], 'property': parts[2],
                      'break_frame': int(parts[3]) if len(parts) >= 4 else -1,
                      'group': parts[4] if len(parts) == 5 else f'line {n + 1}'})
    if not pairs:
        raise ValueError(f'{path}: no pairs listed')
    return pairs


def load_frames(path: str, cfg: SurpriseConfig) -> np.ndarray:
    """A video file or a folder of frame images -> normalised (T, size, size, 3) float32."""
    if os.path.isdir(path):
        names = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise FileNotFoundError(f'{path}: a folder without frame images ({", ".join(IMAGE_SUFFIXES)})')
        names = names[::cfg.frame_step]
        frames = np.stack([decode.decode_image(open(os.path.join(path, f), 'rb').read(), os.path.join(path, f))
                           for f in names])
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f'{path}: no such video or frame folder')
        data = open(path, 'rb').read()
        count = decode.probe(data, path).num_frames
        frames = decode.decode_frames(data, np.arange(0, count, cfg.frame_step), name=path)
    return transforms.eval_views(frames, cfg.size, 1)[0]


def window_starts(num_frames: int, cfg: SurpriseConfig, name: str = 'video') -> np.ndarray:
    if num_frames < cfg.window:
        raise ValueError(f'{name}: {num_frames} frames (after frame_step {cfg.frame_step}) is fewer than the '
                         f'{cfg.window}-frame window: lower --frame_step or use longer videos')
    return np.arange(0, num_frames - cfg.window + 1, cfg.stride)


# ----------------------------------------------------------------------------------------
# Surprise (pure, jitted)
# ----------------------------------------------------------------------------------------
def context_target_indices(grid, context_steps: int) -> tuple:
    """Token indices (flattened (t, h, w)) of the first context_steps time steps, and of the rest."""
    per_step = int(np.prod(grid[1:]))
    total = int(np.prod(grid))
    return np.arange(context_steps * per_step), np.arange(context_steps * per_step, total)


def window_surprise(encoder, predictor, target_encoder, clips, ctx, tgt, mask_index: int, grid) -> jax.Array:
    """clips (B, W, H, W, 3) -> per-token surprise (B, T' - context steps, tokens per step):
    mean over channels of |predictor(encoder(context)) - layer_norm(target_encoder(clip))|."""
    b = clips.shape[0]
    ctx_b, tgt_b = jnp.broadcast_to(ctx, (b, ctx.shape[0])), jnp.broadcast_to(tgt, (b, tgt.shape[0]))
    tokens, token_grid = encoder.embed(clips)
    z = predictor(encoder.encode(jepa.gather_tokens(tokens, ctx_b), ctx_b, token_grid), ctx_b, tgt_b, mask_index)
    h = jepa.gather_tokens(jepa.target_features(target_encoder, clips), tgt_b)
    error = jnp.abs(z.astype(jnp.float32) - h).mean(-1)  # (B, Kt)
    return error.reshape(b, -1, int(np.prod(grid[1:])))


def reduce_tokens(errors: np.ndarray, tokens: str = 'mean', top_k: int = 0) -> np.ndarray:
    """Per-token surprise (..., tokens per step) -> one surprise per target step (...):
    'mean' over the step's tokens (Garrido et al. 2025), or 'top_k': the mean of its top_k largest
    token errors (a small object's event changes few tokens; the mean dilutes it by the rest)."""
    if tokens == 'mean':
        return errors.mean(-1)
    if tokens != 'top_k' or not 0 < top_k <= errors.shape[-1]:
        raise ValueError(f"surprise tokens={tokens!r}, top_k={top_k}: use 'mean', or 'top_k' with 1 <= top_k <= "
                         f"{errors.shape[-1]} (the tokens per time step)")
    return np.sort(errors, axis=-1)[..., -top_k:].mean(-1)


class SurpriseModel:
    """The three networks of a V-JEPA (context encoder, predictor, EMA target encoder) as one
    jitted surprise function; video(frames) -> per-window surprise."""

    def __init__(self, encoder, predictor, target_encoder, cfg: SurpriseConfig):
        self.cfg, grid = cfg, tuple(encoder.grid)
        tubelet = cfg.window // grid[0]
        if tubelet * grid[0] != cfg.window or cfg.context % tubelet or not 0 < cfg.context < cfg.window:
            raise ValueError(f'window {cfg.window} / context {cfg.context}: the encoder takes {grid[0]} time steps; '
                             f'use its num_frames as the window and a context that is a multiple of {tubelet} '
                             'frames, shorter than the window')
        ctx, tgt = context_target_indices(grid, cfg.context // tubelet)
        graphs, self.states = zip(*(nnx.split(m) for m in (encoder, predictor, target_encoder)))

        @jax.jit
        def surprise(states, clips):
            models = [nnx.merge(g, s) for g, s in zip(graphs, states)]
            return window_surprise(*models, clips, jnp.asarray(ctx), jnp.asarray(tgt), cfg.mask_index, grid)
        self._surprise = surprise
        self.target_steps = grid[0] - cfg.context // tubelet

    def token_windows(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) -> per-token surprise (num windows, target steps, tokens per step)."""
        starts, n = window_starts(len(frames), self.cfg), self.cfg.batch_windows
        out = []
        for i in range(0, len(starts), n):
            chunk = starts[i:i + n]
            idx = np.concatenate([chunk, np.repeat(chunk[-1:], n - len(chunk))])  # static batch
            clips = np.stack([frames[s:s + self.cfg.window] for s in idx])
            out.append(np.asarray(self._surprise(self.states, jnp.asarray(clips)))[:len(chunk)])
        return np.concatenate(out)

    def windows(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) -> per-step surprise (num windows, target steps) (cfg.tokens, cfg.top_k)."""
        return reduce_tokens(self.token_windows(frames), self.cfg.tokens, self.cfg.top_k)

    def video(self, frames: np.ndarray) -> dict:
        """-> {'frames' / 'last_frames': first / last target frame of each window (in the video's own
        frame numbers),
        'surprise': (num windows,), 'per_step': (num windows, target steps), 'score'}."""
        per_step = self.windows(frames)
        surprise = per_step.mean(-1)
        score = surprise.max() if self.cfg.reduce == 'max' else surprise.mean()
        starts = window_starts(len(frames), self.cfg)
        first = (starts + self.cfg.context) * self.cfg.frame_step
        last = (starts + self.cfg.window - 1) * self.cfg.frame_step
        return {'frames': first.tolist(), 'last_frames': last.tolist(), 'surprise': surprise.tolist(),
                'per_step': per_step.tolist(), 'score': float(score)}


# ----------------------------------------------------------------------------------------
# Pairs -> accuracy per property, curves
# ----------------------------------------------------------------------------------------
def evaluate_pairs(model: SurpriseModel, pairs: list, log=None) -> list:
    """-> one result per pair: the pair's fields + 'possible' / 'impossible' video results + 'correct'
    (the impossible video scores higher) + 'tie' (both score the same)."""
    results = []
    for n, pair in enumerate(pairs):
        videos = {w: model.video(load_frames(pair[w], model.cfg)) for w in ('possible', 'impossible')}
        possible, impossible = videos['possible']['score'], videos['impossible']['score']
        results.append({**pair, **videos, 'correct': bool(possible < impossible), 'tie': bool(possible == impossible)})
        if log and (n + 1) % 10 == 0:
            log(f'  {n + 1}/{len(pairs)} pairs')
    return results


def credit(gap: float) -> float:
    """A pair's (or group's) share of right for gap = impossible - possible score: 1 above 0, 0 below,
    1/2 on a tie. Twins share their frames up to the break, so with reduce 'max' a tie is exact
    when both maxima fall in shared windows: the pair then tells nothing, and scoring it wrong
    would put chance below 50 %."""
    return 1.0 if gap > 0 else 0.5 if gap == 0 else 0.0


def group_accuracy(results: list) -> float:
    """% of groups whose impossible videos' summed score exceeds their possible videos' (ties 1/2)."""
    gaps = {}
    for r in results:
        gaps[r['group']] = gaps.get(r['group'], 0.0) + r['impossible']['score'] - r['possible']['score']
    return 100.0 * float(np.mean([credit(gap) for gap in gaps.values()]))


def summarise(results: list) -> dict:
    """{property: {'pairs', 'groups', 'accuracy' (% of groups), 'pair_accuracy' (% of pairs),
    'ties' (pairs scored alike), 'mean_gap' (impossible - possible score)}, ..., 'all': ...};
    a tie counts 1/2 (credit)."""
    out = {}
    for prop in sorted({r['property'] for r in results}) + ['all']:
        rows = [r for r in results if prop in ('all', r['property'])]
        gaps = [r['impossible']['score'] - r['possible']['score'] for r in rows]
        out[prop] = {'pairs': len(rows), 'groups': len({r['group'] for r in rows}),
                     'accuracy': group_accuracy(rows),
                     'pair_accuracy': 100.0 * float(np.mean([credit(gap) for gap in gaps])),
                     'ties': int(sum(gap == 0 for gap in gaps)),
                     'mean_gap': float(np.mean(gaps))}
    props = [p for p in out if p != 'all']
    out['all']['macro_accuracy'] = float(np.mean([out[p]['accuracy'] for p in props]))
    return out


def aligned_curves(group: list) -> tuple:
    """Pairs with a known break frame -> (x, possible, impossible): x = a window's last predicted
    frame minus the pair's break frame (from 0 on, a window predicts frames after the break);
    curves (pairs, len(x)), NaN where a pair has no such window: each pair's surprise minus its
    level before the break (the mean over the windows its twins share, where the two surprises
    are equal), so that the spread is the pairs' change, not the spread of their levels."""
    rel = [np.asarray(r['possible'].get('last_frames', r['possible']['frames'])) - r['break_frame'] for r in group]
    x = np.arange(min(f.min() for f in rel), max(f.max() for f in rel) + 1)
    x = x[np.isin(x, np.concatenate(rel))]
    curves = {w: np.full((len(group), len(x)), np.nan) for w in ('possible', 'impossible')}
    for i, (r, f) in enumerate(zip(group, rel)):
        p, q = (np.asarray(r[w]['surprise']) for w in ('possible', 'impossible'))
        shared = p[:len(q)] == q[:len(p)]
        level = p[:len(shared)][shared].mean() if shared.any() else p[0]
        for w, curve in (('possible', p), ('impossible', q)):
            n = min(len(curve), len(f))
            curves[w][i, np.searchsorted(x, f[:n])] = curve[:n] - level
    return x, curves['possible'], curves['impossible']


def plot_surprise(results: list, path: str, title: str = '') -> str:
    """One panel per property: surprise over time of the possible (blue) and impossible (red)
    videos, mean and +-1 std over the pairs. Where every pair knows its break frame the curves are
    aligned on it (x = frames after the break, dashed at 0) and each pair is measured from its level
    before the break (aligned_curves); otherwise absolute surprise over the video's frames (the
    pairs' shortest length), the mean break frame dashed where known."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    props = sorted({r['property'] for r in results})
    cols = min(3, len(props))
    rows = -(-len(props) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    aligned_any = False
    for ax, prop in zip(axes.flat, props):
        group = [r for r in results if r['property'] == prop]
        if all(r['break_frame'] >= 0 for r in group):
            aligned_any = True
            x, possible, impossible = aligned_curves(group)
            curves = {'possible': possible, 'impossible': impossible}
            ax.axvline(0, color='k', ls='--', lw=1)
            ax.axhline(0, color='grey', lw=0.5)
            ax.set_xlabel('last predicted frame - break frame', fontsize=8)
        else:
            n = min(len(r[w]['surprise']) for r in group for w in ('possible', 'impossible'))
            x = np.asarray(group[0]['possible']['frames'][:n])
            curves = {w: np.array([r[w]['surprise'][:n] for r in group]) for w in ('possible', 'impossible')}
            breaks = [r['break_frame'] for r in group if r['break_frame'] >= 0]
            if breaks:
                ax.axvline(np.mean(breaks), color='k', ls='--', lw=1)
            ax.set_xlabel('first predicted frame', fontsize=8)
        for w, colour in (('possible', 'tab:blue'), ('impossible', 'tab:red')):
            with np.errstate(invalid='ignore'), warnings.catch_warnings():
                warnings.simplefilter('ignore', RuntimeWarning)  # a column with no pair: NaN
                mean, sd = np.nanmean(curves[w], 0), np.nanstd(curves[w], 0)
            ax.plot(x, mean, color=colour, label=w)
            ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.15)
        groups = len({r['group'] for r in group})
        ax.set_title(f'{prop}: {group_accuracy(group):.0f}% of {groups} ' + ('pairs' if groups == len(group) else
                                                                                'groups'), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(props):]:
        ax.axis('off')
    axes.flat[0].set_ylabel('surprise - level before the break' if aligned_any else 'surprise (L1)', fontsize=8)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(summary: dict) -> str:
    lines = ['| property | pairs | groups | accuracy (% of groups, ties 1/2) | tied pairs | mean surprise gap |',
             '| --- | --- | --- | --- | --- | --- |']
    for prop, row in summary.items():
        lines.append(f"| {prop} | {row['pairs']} | {row['groups']} | {row['accuracy']:.1f} | {row['ties']} "
                     f"| {row['mean_gap']:+.4f} |")
    return '\n'.join(lines)


def run(model: SurpriseModel, pairs_path: str, workdir: str, name: str = 'model', log=print) -> dict:
    """Evaluate every pair; write results.json (per pair), summary.json and surprise.png in workdir."""
    pairs = read_pairs(pairs_path)  # a bad list stops before the workdir is made
    os.makedirs(workdir, exist_ok=True)
    results = evaluate_pairs(model, pairs, log)
    summary = summarise(results)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
        json.dump(results, f)
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
        json.dump({'config': dataclasses.asdict(model.cfg), 'summary': summary}, f, indent=1)
    plot_surprise(results, os.path.join(workdir, 'surprise.png'), f'{name}: surprise over time')
    return summary


def model_from(config, checkpoint: str = '', random_init: bool = False, seed: int = 0, **overrides) -> SurpriseModel:
    """A SurpriseModel from a pretraining config and a workdir (or a random init); the window,
    context and size default to the config's num_frames, num_frames / 2 and img_size."""
    from vjepa_jax import pretrained
    if checkpoint:
        networks = pretrained.load_jepa(checkpoint, config)
    elif random_init:
        networks = pretrained.build_jepa(config, seed)
    else:
        raise ValueError('no weights named: pass --checkpoint=WORKDIR (a training workdir) or --random_init')
    m = config.model
    defaults = dict(window=m.num_frames, context=m.num_frames // 2, size=m.img_size)
    return SurpriseModel(*networks, SurpriseConfig(**{**defaults, **overrides}))


def define_flags():
    """The command line (defined only when run as a tool)."""
    global _CONFIG
    _CONFIG = config_lib.define_config_flag(help_string='the pretraining config of the model (configs/...py)')
    config_lib.define_workdir_flag(help_string='where results.json, summary.json, surprise.png go')
    flags.DEFINE_string('pairs', None, 'pairs list: "possible impossible property [break_frame [group]]" per line')
    flags.DEFINE_string('checkpoint', '', 'a training (or converted) workdir')
    flags.DEFINE_bool('random_init', False, 'a randomly initialised model (a baseline)')
    flags.DEFINE_integer('seed', 0, 'the random init\'s seed')
    for field in dataclasses.fields(SurpriseConfig):
        if field.name in ('window', 'context', 'size'):
            flags.DEFINE_integer(field.name, None, f'{field.name} (default: from the config)')
        elif field.type == 'str' or isinstance(field.default, str):
            flags.DEFINE_string(field.name, field.default, field.name)
        else:
            flags.DEFINE_integer(field.name, field.default, field.name)


def main(argv):
    from vjepa_jax import validate
    from vjepa_jax.config import UsageError
    if _CONFIG.value is None or not FLAGS.workdir or not FLAGS.pairs:
        raise UsageError('pass --config=CONFIG --pairs=LIST --workdir=DIR and --checkpoint=WORKDIR (or --random_init)')
    validate.local_workdir(FLAGS.workdir, 'intuitive_physics')
    try:
        overrides = {f.name: FLAGS[f.name].value for f in dataclasses.fields(SurpriseConfig)
                     if FLAGS[f.name].value is not None}
        model = model_from(_CONFIG.value, FLAGS.checkpoint, FLAGS.random_init, FLAGS.seed, **overrides)
        summary = run(model, FLAGS.pairs, FLAGS.workdir, FLAGS.checkpoint or 'random init')
    except (ValueError, KeyError, decode.DecodeError) as e:
        raise SystemExit(f'error: {e}')
    print(table(summary))
    return 0


if __name__ == '__main__':
    define_flags()
    config_lib.run(main)
