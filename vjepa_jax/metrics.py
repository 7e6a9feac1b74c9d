"""Metrics a person can read and plot: JSON lines, TensorBoard event files (tensorboardX,
no TensorFlow needed), a progress line (steps/s, clips/s, ETA), and a loss-curve PNG
(`python -m vjepa_jax.metrics --workdir=DIR [--keys=loss,loss_mask0]` redraws it at any time)."""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time


class JsonlWriter:
    """Appends one JSON object per call to DIR/metrics.jsonl. A run resumed at start_step
    first drops the records of steps >= start_step (they are about to be redone), writing the
    kept rows to a new file that replaces the old one atomically."""

    def __init__(self, workdir: str, name: str = 'metrics.jsonl', start_step: int = 0):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, name)
        if os.path.exists(self.path):  # rewritten aside, then renamed over: a kill here loses no row
            rows = [r for r in read_jsonl(self.path) if r['step'] < start_step]
            with open(self.path + '.tmp', 'w') as f:
                f.writelines(json.dumps(r) + '\n' for r in rows)
            os.replace(self.path + '.tmp', self.path)
        self._file = open(self.path, 'a', buffering=1)

    def write(self, step: int, metrics: dict) -> None:
        try:
            self._file.write(json.dumps({'step': int(step), **{k: float(v) for k, v in metrics.items()}}) + '\n')
        except OSError as e:  # a full disk: say which file
            raise OSError(e.errno, e.strerror, self.path) from None

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str) -> list:
    """Records of a metrics.jsonl; a last line cut short by a killed process is ignored."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


class TensorBoardWriter:
    """Scalars to DIR/tensorboard/events.out.tfevents.* (`tensorboard --logdir DIR`)."""

    def __init__(self, workdir: str, start_step: int = 0):
        from tensorboardX import SummaryWriter
        self.logdir = os.path.join(workdir, 'tensorboard')
        self._writer = SummaryWriter(self.logdir, purge_step=start_step or None)

    def write(self, step: int, metrics: dict) -> None:
        try:
            for key, value in metrics.items():
                self._writer.add_scalar(key, float(value), int(step))
            self._writer.flush()
        except OSError as e:  # a full disk: say which folder
            raise OSError(e.errno, e.strerror, self.logdir) from None

    def close(self) -> None:
        self._writer.close()


def local_mirror(workdir: str) -> str:
    """Where metric files are written: the workdir itself, or for a remote one (gs://...) a local
    directory that starts with the remote metrics.jsonl and is copied up by sync_up()."""
    if '://' not in workdir:
        os.makedirs(workdir, exist_ok=True)
        return workdir
    from etils import epath
    local = os.path.join(tempfile.gettempdir(), 'vjepa_metrics', re.sub(r'\W+', '_', workdir))
    os.makedirs(local, exist_ok=True)
    remote = epath.Path(workdir) / 'metrics.jsonl'
    if remote.exists():
        with open(os.path.join(local, 'metrics.jsonl'), 'wb') as f:
            f.write(remote.read_bytes())
    return local


def sync_up(local: str, workdir: str) -> None:
    """Copy every file under `local` to the remote workdir (no-op when they are the same)."""
    if local == workdir:
        return
    from etils import epath
    for root, _, files in os.walk(local):
        for name in files:
            target = epath.Path(workdir) / os.path.relpath(os.path.join(root, name), local)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(os.path.join(root, name), 'rb') as f:
                target.write_bytes(f.read())


class MetricsWriter:
    """JSON lines and (optionally) TensorBoard together, in `self.dir` (the workdir, or a local
    mirror of a remote one copied up every sync_every_s, at every checkpoint (sync) and at close);
    a no-op when not active (processes other than 0). The trainers sync at each checkpoint, so
    after a hard kill the remote metrics reach at least the checkpoint the run resumes from: the
    rows after it are redone, and no gap is left."""

    def __init__(self, workdir: str, start_step: int = 0, tensorboard: bool = True, active: bool = True,
                 sync_every_s: float = 300.0):
        self.workdir, self.writers = workdir, []
        self.dir = local_mirror(workdir) if active else workdir
        if active:
            self.writers.append(JsonlWriter(self.dir, start_step=start_step))
            if tensorboard:
                self.writers.append(TensorBoardWriter(self.dir, start_step))
        self.path = os.path.join(self.dir, 'metrics.jsonl')
        self.sync_every_s, self.synced = sync_every_s, time.time()

    def write(self, step: int, metrics: dict) -> None:
        for w in self.writers:
            w.write(step, metrics)
        if self.writers and time.time() - self.synced > self.sync_every_s:
            self.sync()

    def sync(self) -> None:
        """Copy the local mirror up to a remote workdir now (a no-op for a local one)."""
        if self.writers:
            sync_up(self.dir, self.workdir)
            self.synced = time.time()

    def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.writers:
            sync_up(self.dir, self.workdir)


class Progress:
    """'step 120/600 (20%) | loss 0.4123 | rank 11.2 | 3.1 steps/s | 49.6 clips/s | ETA 2m35s'
    (rank: the targets' effective rank, when the metrics carry rank_target)."""

    def __init__(self, total_steps: int, batch_size: int, first_step: int = 0, stream=sys.stdout):
        self.total, self.batch, self.stream = total_steps, batch_size, stream
        self.t0, self.s0 = None, first_step

    def update(self, step: int, metrics: dict) -> str:
        """Call after step `step` finished; the first call only starts the clock (compile)."""
        now = time.time()
        if self.t0 is None:
            self.t0, self.s0 = now, step
            rate = 0.0
        else:
            rate = (step - self.s0) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float('nan')
        eta_text = f'{int(eta // 60)}m{int(eta % 60):02d}s' if rate > 0 else '--'
        rank = f'rank {metrics["rank_target"]:.1f} | ' if 'rank_target' in metrics else ''
        line = (f'step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%) | loss {metrics["loss"]:.4f} | '
                f'{rank}{rate:.2f} steps/s | {rate * self.batch:.1f} clips/s | ETA {eta_text}')
        print(line, file=self.stream, flush=True)
        return line


class StepSpeed:
    """Throughput between two calls: {'steps_per_s', 'model_tflops_per_device', 'mfu'} from the analytic
    FLOPs of a step (flops.step_flops x the global batch) and the device's bf16 peak (no 'mfu' where
    flops.PEAK_BF16_FLOPS has none, e.g. CPU). The first call (after compilation) only starts the clock."""

    def __init__(self, flops_per_step: float, peak: float | None, devices: int):
        self.flops, self.peak, self.devices = flops_per_step, peak, devices
        self.last = None

    def update(self, step: int) -> dict:
        now, last = time.time(), self.last
        self.last = (step, now)
        if last is None or step <= last[0]:
            return {}
        rate = (step - last[0]) / max(now - last[1], 1e-9)
        per_device = rate * self.flops / self.devices
        out = {'steps_per_s': rate, 'model_tflops_per_device': per_device / 1e12}
        if self.peak:
            out['mfu'] = per_device / self.peak
        return out


def plot_loss_curve(jsonl_path: str, png_path: str, keys=('loss',)) -> str:
    """Write a PNG of metrics over steps from a metrics.jsonl; a second panel shows the targets'
    effective rank (rank_target) where the rows have it."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = read_jsonl(jsonl_path)
    ranks = [(r['step'], r['rank_target']) for r in rows if 'rank_target' in r]
    fig, axes = plt.subplots(1, 2 if ranks else 1, figsize=(11 if ranks else 6, 3.5), squeeze=False)
    ax = axes[0, 0]
    if ranks:
        axes[0, 1].plot([p[0] for p in ranks], [p[1] for p in ranks], color='C2')
        axes[0, 1].set_xlabel('step')
        axes[0, 1].set_ylabel('effective rank of the targets')
        axes[0, 1].grid(alpha=0.3)
    for key in keys:
        pts = [(r['step'], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key)
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path


def main(argv):
    from absl import flags

    from vjepa_jax.config import UsageError
    workdir = flags.FLAGS.workdir
    if not workdir:
        raise UsageError('pass --workdir=DIR (a training workdir) [--keys=loss,loss_mask0]')
    local = local_mirror(workdir)  # a gs:// workdir's metrics.jsonl is read through its local copy
    path = os.path.join(local, 'metrics.jsonl')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{workdir}/metrics.jsonl not found: --workdir is where a run wrote metrics.jsonl')
    keys = tuple(k.strip() for k in flags.FLAGS.keys.split(',') if k.strip()) or ('loss',)
    png = plot_loss_curve(path, os.path.join(local, 'loss.png'), keys)
    sync_up(local, workdir)
    print(png if local == workdir else f'{workdir}/loss.png')


if __name__ == '__main__':
    from absl import flags

    from vjepa_jax import config as config_lib
    config_lib.define_workdir_flag(help_string='a training workdir (its metrics.jsonl); loss.png is written there')
    flags.DEFINE_string('keys', 'loss', 'comma-separated metrics.jsonl keys to plot')
    config_lib.run(main)
