"""A full disk mid-run: the run ends with one line naming what could not be written and the newest
checkpoint that verifies; the earlier checkpoints stay intact. A real full filesystem: a small tmpfs (the test
skips, saying why, where mounting is not allowed)."""
import os
import re
import subprocess
import sys

import pytest

from vjepa_jax.tools.verify_checkpoints import verify_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / 'small'
    mount.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', str(mount)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f'cannot mount a tmpfs here ({(r.stderr or r.stdout).strip()[:120]}): needs root or CAP_SYS_ADMIN')
    try:
        yield mount
    finally:
        subprocess.run(['umount', '-l', str(mount)], capture_output=True)


@pytest.mark.slow
def test_disk_full_stops_in_one_line_and_keeps_the_checkpoints(small_disk):
    workdir = small_disk / 'run'
    run = subprocess.run([sys.executable, '-m', 'vjepa_jax.main', '--config=configs/pretrain/tiny.py',
                          f'--workdir={workdir}', '--config.train.num_steps=200', '--config.train.log_every=1',
                          '--config.checkpoint.every_steps=2', '--config.checkpoint.keep_last=1000'],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith('error:')]
    assert run.returncode == 1 and len(errors) == 1, run.stderr[-3000:]
    assert re.match(r'error: could not write .*\(no space left on the device\) at step \d+: stopped; the newest '
                    r'checkpoint that verifies is step \d+ in ', errors[0]), run.stderr[-3000:]
    # the free space is checked before a checkpoint is written: no writer thread meets the full disk
    assert 'Traceback' not in run.stderr and 'RESOURCE_EXHAUSTED' not in run.stderr, run.stderr[-3000:]
    assert re.search(r'it needs about [\d.]+ MiB, [\d.]+ MiB are free', errors[0]), errors[0]
    last = int(re.search(r'verifies is step (\d+)', errors[0]).group(1))
    results = verify_workdir(str(workdir))
    assert last in results and results[last] is None
    assert all(problem is None for step, problem in results.items() if step <= last), results


def test_read_only_filesystem_stops_in_one_line(small_disk):
    """A workdir on a read-only filesystem: one line naming it, before any work."""
    r = subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f'cannot remount the tmpfs read-only ({(r.stderr or r.stdout).strip()[:120]})')
    run = subprocess.run([sys.executable, '-m', 'vjepa_jax.main', '--config=configs/pretrain/tiny.py',
                          f'--workdir={small_disk / "run"}', '--config.train.num_steps=2'],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [
        f'error: workdir {small_disk / "run"} cannot be written (Read-only file system: {small_disk / "run"}): pass '
        f'a --workdir on a writable filesystem'], run.stderr[-3000:]


MID_WRITE = ('import sys; from vjepa_jax import checkpoint, main, config; '
             'checkpoint.Checkpointer.check_space = lambda self, step, state: None; '  # the disk fills after the check
             'main.define_flags(); config.run(main.main)')


@pytest.mark.slow
def test_disk_full_during_a_write_stops_in_one_line(small_disk):
    """The disk fills while the asynchronous writer is inside a checkpoint (here: the free-space
    check left out): the writer threads' echoes (orbax's, asyncio's, TensorStore's callbacks into
    the closed event loop) stay off the terminal; the one line and the older checkpoints remain."""
    workdir = small_disk / 'run'
    run = subprocess.run([sys.executable, '-c', MID_WRITE, '--config=configs/pretrain/tiny.py', f'--workdir={workdir}',
                          '--config.train.num_steps=200', '--config.train.log_every=1',
                          '--config.checkpoint.every_steps=2', '--config.checkpoint.keep_last=1000'],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 1 and run.stderr.strip().count('\n') == 0, run.stderr[-3000:]
    # (what meets the full disk first: a checkpoint file, or the metrics written beside it; each is named)
    run_dir = re.escape(str(workdir))
    assert re.match(rf'error: could not write (a checkpoint file in {run_dir}/checkpoints|{run_dir}/metrics.jsonl|'
                    rf'{run_dir}/tensorboard) \(no space left on the device\) '
                    r'at step \d+: stopped; the newest checkpoint that verifies is step \d+ in ', run.stderr), \
        run.stderr[-3000:]
    last = int(re.search(r'verifies is step (\d+)', run.stderr).group(1))
    assert verify_workdir(str(workdir))[last] is None


@pytest.mark.slow
def test_ac_trainer_disk_full_stops_in_one_line(tmp_path, small_disk):
    """The AC trainer meets a full disk as pretraining does: one line, exit status 1, the earlier
    checkpoints intact."""
    from vjepa_jax.world_model import collect
    episodes = collect.collect('two_rooms', str(tmp_path / 'data'), episodes=6, steps=20, log=lambda *a, **k: None)
    subprocess.run(['mount', '-o', 'remount,size=4m', str(small_disk)], check=True, capture_output=True)
    workdir = small_disk / 'ac'
    run = subprocess.run([sys.executable, '-m', 'vjepa_jax.world_model.trainer',
                          '--config=configs/world_model/two_rooms.py:test', f'--workdir={workdir}',
                          f'--config.data.episodes={episodes}', '--config.train.num_steps=40', '--config.optim.ipe=4',
                          '--config.train.log_every=1', '--config.checkpoint.every_steps=2',
                          '--config.checkpoint.keep_last=0', '--config.data.cache_tokens=True'],
                         capture_output=True, text=True, timeout=900, cwd=ROOT,
                         env=dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1'))
    assert run.returncode == 1 and run.stderr.strip().count('\n') == 0, run.stderr[-3000:]
    assert re.match(r'error: could not write checkpoint \d+ in .*\(it needs about [\d.]+ MiB, [\d.]+ MiB are free\) '
                    r'\(no space left on the device\) at step \d+: stopped; the newest checkpoint that verifies is '
                    r'step \d+ in ', run.stderr), run.stderr
    last = int(re.search(r'verifies is step (\d+)', run.stderr).group(1))
    results = verify_workdir(str(workdir))
    assert last in results and all(problem is None for problem in results.values()), results
