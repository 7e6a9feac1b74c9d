"""Real processes: SIGTERM (twice) saves and exits, SIGKILL resumes exactly, two JAX processes
train together (CPU collectives) and agree with one process on the same global batch."""
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # subprocesses

from helpers import ROOT, config
from vjepa_jax import checkpoint, masks, sharding, train_state
from vjepa_jax.data.stream import DataStream
from vjepa_jax.metrics import read_jsonl

TIMEOUT = 300


def main_process(workdir, *args, devices=8, output=subprocess.PIPE):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
               JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, '.jax_cache'),
               # cache even the short compilations (orbax's per-replica slices on the first
               # checkpoint write, ~6 s of them): every later process of the test loads them
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
    cmd = [sys.executable, '-m', 'vjepa_jax.main', '--config=configs/pretrain/tiny.py', f'--workdir={workdir}', *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)


def wait_for_step(proc, workdir, step):
    """Poll metrics.jsonl until `step` is logged (the process must still be running)."""
    path = os.path.join(workdir, 'metrics.jsonl')
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if os.path.exists(path) and any(r['step'] >= step for r in read_jsonl(path)):
            return
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    raise TimeoutError(f'step {step} not reached')


def losses(workdir):
    return {r['step']: r['loss'] for r in read_jsonl(os.path.join(workdir, 'metrics.jsonl'))}


def restore(workdir, cfg, step, mesh):
    _, abstract = train_state.state_layout(train_state.make_trainer(cfg), cfg, mesh)
    return checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints')).restore(step, abstract)[0]


def test_sigterm_saves_and_sigkill_resumes_exactly(tmp_path, tiny_reference):
    steps = 20
    over = {'train.num_steps': steps, 'train.log_every': 1, 'checkpoint.every_steps': 4}
    args = [f'--config.{k}={v}' for k, v in over.items()]
    reference_dir, reference = tiny_reference  # the same 20 steps run straight in-process
    run = tmp_path / 'run'
    # 1: preemption notice -> checkpoint at the current step, exit 0
    proc = main_process(run, *args)
    wait_for_step(proc, run, 5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # a scheduler's second notice, while the last save lands
    out = proc.communicate(timeout=TIMEOUT)[0]
    assert proc.returncode == 0 and 'SIGTERM: saved checkpoint' in out, out[-3000:]
    ckpt = checkpoint.Checkpointer(str(run / 'checkpoints'))
    saved = ckpt.latest_step()
    assert 5 < saved < steps and max(losses(run)) == saved - 1 and ckpt.verify(saved) is None
    # 2: resume, then SIGKILL (no chance to save) a few steps later
    proc = main_process(run, *args)
    wait_for_step(proc, run, saved + 6)
    proc.kill()
    proc.wait()
    # 3: resume from the last complete checkpoint and finish
    proc = main_process(run, *args)
    out = proc.communicate(timeout=TIMEOUT)[0]
    assert proc.returncode == 0, out[-3000:]
    assert 'resumed from step' in out
    got, want = losses(run), losses(reference_dir)
    assert sorted(got) == list(range(steps))
    assert [got[s] for s in range(steps)] == [want[s] for s in range(steps)]  # bit for bit
    cfg = config('tiny', **over)
    final = restore(run, cfg, steps, sharding.make_mesh(cfg.mesh))
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def free_port():
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


TWO_PROCESS_STEPS = 4
TWO_PROCESS_OVERRIDES = {'train.num_steps': TWO_PROCESS_STEPS, 'train.log_every': 1}


@pytest.fixture(scope='module', autouse=True)
def two_processes(request, tmp_path_factory):
    """The two-process run of test_two_processes_train_together_like_one, started with the
    module so that the SIGTERM test runs meanwhile: JAX lets only process 0 read and write the
    persistent compilation cache, so process 1 compiles everything itself (~30 s, one core,
    process 0 waiting for it). -> (workdir, [process 0, process 1]); None when that test is
    not selected. Their output goes to process_<i>.log in the workdir."""
    if not any(item.originalname == 'test_two_processes_train_together_like_one' for item in request.session.items):
        yield None
        return
    workdir = tmp_path_factory.mktemp('two_processes')
    args = [f'--config.{k}={v}' for k, v in TWO_PROCESS_OVERRIDES.items()]
    port = free_port()
    logs = [open(workdir / f'process_{i}.log', 'w') for i in range(2)]  # not pipes: nobody reads them yet
    procs = [main_process(workdir, *args, f'--coordinator_address=localhost:{port}', '--num_processes=2',
                          f'--process_id={i}', devices=2, output=logs[i]) for i in range(2)]
    yield workdir, procs
    for p, log in zip(procs, logs):
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()


def test_two_processes_train_together_like_one(two_processes):
    steps, over = TWO_PROCESS_STEPS, TWO_PROCESS_OVERRIDES
    tmp_path, procs = two_processes
    for p in procs:
        p.wait(timeout=TIMEOUT)
    outs = [(tmp_path / f'process_{i}.log').read_text() for i in range(2)]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    assert 'process 1/2: 2 local of 4 devices' in outs[1]
    got = losses(tmp_path)
    assert sorted(got) == list(range(steps))
    # one process, 4 devices, the same global batch: host 0's rows then host 1's rows
    cfg = config('tiny', **over)
    trainer = train_state.make_trainer(cfg)
    sampler = masks.make_sampler(cfg, trainer.grid)
    mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:4])
    init, abstract = train_state.state_layout(trainer, cfg, mesh)
    state = jax.jit(init, out_shardings=train_state.shardings_of(abstract))()
    abstract_batch = train_state.batch_specs(cfg, sampler, mesh)
    step_fn, _ = train_state.compile_step(trainer, abstract, abstract_batch, mesh)
    hosts = [DataStream(cfg, sampler, shard_index=h, shard_count=2) for h in range(2)]
    for step in range(steps):
        parts = [next(h) for h in hosts]
        clips = np.concatenate([p[0] for p in parts])
        mask_list = [tuple(np.concatenate([p[1][m][i] for p in parts]) for i in range(2)) for m in range(2)]
        state, out = step_fn(state, jax.device_put(clips, abstract_batch[0].sharding),
                             jax.device_put(mask_list, train_state.shardings_of(abstract_batch[1])))
        np.testing.assert_allclose(got[step], float(out['loss']), rtol=1e-6)
    final = restore(tmp_path, cfg, steps, mesh)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
