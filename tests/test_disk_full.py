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
    # (TensorStore's threads may print 'Event loop is closed' tracebacks around it, below Python's hooks)
    assert 'RESOURCE_EXHAUSTED' not in run.stderr, run.stderr[-3000:]  # orbax's own reports of it: dropped
    last = int(re.search(r'verifies is step (\d+)', errors[0]).group(1))
    results = verify_workdir(str(workdir))
    assert last in results and results[last] is None
    assert all(problem is None for step, problem in results.items() if step <= last), results
