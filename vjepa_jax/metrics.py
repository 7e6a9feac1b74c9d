"""Metrics a person can read and plot: JSON lines, a progress line (steps/s, ETA), and a
loss-curve PNG."""
from __future__ import annotations

import json
import os
import sys
import time


class JsonlWriter:
    """Appends one JSON object per call to DIR/metrics.jsonl."""

    def __init__(self, workdir: str, name: str = 'metrics.jsonl'):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, name)
        self._file = open(self.path, 'a', buffering=1)

    def write(self, step: int, metrics: dict) -> None:
        self._file.write(json.dumps({'step': int(step), **{k: float(v) for k, v in metrics.items()}}) + '\n')

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """'step 120/600 (20%) | loss 0.4123 | 3.1 steps/s | 49.6 clips/s | ETA 2m35s'."""

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
        line = (f'step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%) | loss {metrics["loss"]:.4f} | '
                f'{rate:.2f} steps/s | {rate * self.batch:.1f} clips/s | ETA {eta_text}')
        print(line, file=self.stream, flush=True)
        return line


def plot_loss_curve(jsonl_path: str, png_path: str, keys=('loss',)) -> str:
    """Write a PNG of metrics over steps from a metrics.jsonl."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = read_jsonl(jsonl_path)
    fig, ax = plt.subplots(figsize=(6, 3.5))
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
