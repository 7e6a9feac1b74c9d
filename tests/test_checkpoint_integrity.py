"""Checkpoints you can trust: content checksums, damaged checkpoints found and skipped, the
verify tool. Real orbax checkpoints of a small state, damaged on disk the ways disks and
killed writers damage them."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjepa_jax import checkpoint
from vjepa_jax.tools.verify_checkpoints import verify_workdir


class Position:
    """A data iterator position (as data.stream.DataStream saves it)."""

    def __init__(self, step=0):
        self.step = step

    def get_state(self):
        return json.dumps({'step': self.step}).encode()

    def set_state(self, state):
        self.step = json.loads(state)['step']

    def start_prefetch(self):
        pass


def state_at(step: int) -> dict:
    k = jax.random.key(step)
    return {'step': jnp.int32(step), 'params': {'w': jax.random.normal(k, (64, 48)),
                                                'b': jnp.arange(48, dtype=jnp.bfloat16) * step},
            'count': jnp.arange(3, dtype=jnp.int32) + step}


def saved_workdir(root, steps=(1, 2, 3)) -> str:
    """WORKDIR with synchronous checkpoints at `steps`."""
    workdir = str(root / 'run')
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), keep_last=10, async_save=False)
    for s in steps:
        ckpt.save(s, state_at(s), Position(s), {'step': s}, force=True)
    ckpt.close()
    return workdir


def abstract():
    return jax.eval_shape(lambda: state_at(0))


def state_files(workdir, step):
    base = os.path.join(workdir, 'checkpoints', str(step), 'state')
    files = [os.path.join(d, f) for d, _, fs in os.walk(base) for f in fs]
    return sorted(files, key=os.path.getsize, reverse=True)


def test_checksum_is_mesh_free_and_sees_any_changed_word():
    x = jax.random.normal(jax.random.key(0), (8, 6))
    base = checkpoint.state_checksums({'x': x})
    mesh = jax.make_mesh((8,), ('d',))
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('d')))
    assert checkpoint.state_checksums({'x': sharded}) == base
    for i in (0, 17, 47):  # one flipped bit anywhere changes it
        bits = np.asarray(x).view(np.uint32).copy()
        bits.reshape(-1)[i] ^= 1 << (i % 32)
        assert checkpoint.state_checksums({'x': jnp.asarray(bits.view(np.float32))}) != base
    swapped = np.asarray(x).copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # same values, other places
    assert checkpoint.state_checksums({'x': jnp.asarray(swapped)}) != base


def damage_truncate(workdir, step):
    path = state_files(workdir, step)[0]
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def damage_random_bytes(workdir, step):
    """256 random bytes written over the middle of every state file larger than 512 bytes."""
    rng = np.random.default_rng(step)
    for path in state_files(workdir, step):
        size = os.path.getsize(path)
        if size > 512:
            with open(path, 'r+b') as f:
                f.seek(size // 2 - 128)
                f.write(rng.integers(0, 256, 256, dtype=np.uint8).tobytes())


def damage_flip_one_data_byte(workdir, step):
    """One bit flipped in the middle of the array data: it restores without error, other numbers."""
    data = [f for f in state_files(workdir, step) if os.sep + 'd' + os.sep in f]
    path = max(data, key=os.path.getsize)
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x10]))


def damage_empty_files(workdir, step):
    for path in state_files(workdir, step):
        open(path, 'wb').close()


def damage_delete_state(workdir, step):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step), 'state'))


def damage_delete_meta(workdir, step):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step), 'meta'))


def damage_empty_step(workdir, step):
    folder = os.path.join(workdir, 'checkpoints', str(step))
    shutil.rmtree(folder)
    os.makedirs(folder)


def damage_data_position(workdir, step):
    data = os.path.join(workdir, 'checkpoints', str(step), 'data')
    for name in os.listdir(data):
        with open(os.path.join(data, name), 'w') as f:
            f.write('{"step": ')


DAMAGES = [damage_truncate, damage_random_bytes, damage_flip_one_data_byte, damage_empty_files, damage_delete_state, damage_delete_meta,
           damage_empty_step, damage_data_position]


@pytest.mark.parametrize('damage', DAMAGES, ids=lambda f: f.__name__[7:])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    workdir = saved_workdir(tmp_path)
    damage(workdir, 3)
    assert verify_workdir(workdir)[2] is None
    if damage is not damage_empty_step:  # an empty folder is not a checkpoint to orbax at all
        assert verify_workdir(workdir)[3] is not None
    lines = []
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), keep_last=10)
    position = Position()
    step, state, meta = ckpt.restore_newest(abstract(), position, log=lines.append)
    assert step == 2 and position.step == 2 and meta['data_restored']
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_at(2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if damage is not damage_empty_step:
        assert len(lines) == 1 and lines[0].startswith('checkpoint 3: ') and '\n' not in lines[0], lines
        assert 'trying checkpoint 2' in lines[0]
        if damage is damage_flip_one_data_byte:  # found by the checksums alone
            assert 'does not match the checksum saved with it' in lines[0]
        assert os.path.isdir(os.path.join(workdir, 'checkpoints_damaged', '3'))  # kept, out of the way
    assert ckpt.all_steps() == [1, 2] and ckpt.latest_verified_step() == 2
    ckpt.save(3, state_at(3), Position(3), {'step': 3}, force=True)  # the step can be saved again
    ckpt.close()
    assert verify_workdir(workdir) == {1: None, 2: None, 3: None}


def test_random_bytes_are_caught_by_the_checksums_not_by_luck(tmp_path):
    """A state that restores without error but with other numbers is refused by its checksums."""
    workdir = saved_workdir(tmp_path, steps=(1,))
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    state, meta = ckpt.restore(1, abstract())
    meta['checksums']['params/w'] ^= 1
    with pytest.raises(checkpoint.CheckpointDamaged, match=r'checkpoint 1: content of 1 array\(s\) .*\(params/w\)'):
        checkpoint.check_checksums(state, meta['checksums'], 1)
    ckpt.close()


def test_every_checkpoint_damaged_starts_over_and_says_so(tmp_path):
    workdir = saved_workdir(tmp_path, steps=(1, 2))
    damage_truncate(workdir, 1)
    damage_delete_state(workdir, 2)
    lines = []
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    assert ckpt.restore_newest(abstract(), Position(), log=lines.append) == (None, None, None)
    assert len(lines) == 2 and 'no older checkpoint' in lines[1]
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints_damaged'))) == ['1', '2']
    ckpt.close()


def test_verify_tool_command(tmp_path):
    import subprocess
    import sys
    workdir = saved_workdir(tmp_path, steps=(1, 2))
    damage_random_bytes(workdir, 2)
    run = subprocess.run([sys.executable, '-m', 'vjepa_jax.tools.verify_checkpoints', f'--workdir={workdir}'],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr[-2000:]
    out = run.stdout.splitlines()
    assert out[0] == 'checkpoint 1: ok' and out[1].startswith('checkpoint 2: DAMAGED: checkpoint 2: ')
    assert out[2] == '2 checkpoint(s); newest that verifies: 1'
    bad = subprocess.run([sys.executable, '-m', 'vjepa_jax.tools.verify_checkpoints', f'--workdir={tmp_path}/none'],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith('error: --workdir=')


def test_a_storage_failure_inside_the_writer_names_the_checkpoint_directory(tmp_path, monkeypatch):
    """orbax writes some files with plain file objects, whose OSError carries no file name, and
    TensorStore says ENOSPC only in its text: the Checkpointer names its own directory for both,
    and the run's one line then says what could not be written."""
    ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'), every_steps=1, async_save=False)
    state = state_at(1)
    failures = [OSError(28, 'No space left on device'),  # file.write() in a thread: no file name
                RuntimeError('Error writing "state/d/0": [UNKNOWN] No space left on device')]
    for failure in failures:
        def fail(*args, **kwargs):
            raise failure
        monkeypatch.setattr(ckpt.manager, 'save', fail)
        with pytest.raises(OSError) as raised:
            ckpt.save(1, state, Position(1), {}, force=True)
        assert raised.value.filename == f'a checkpoint file in {tmp_path}/checkpoints'
        assert raised.value.__cause__ is failure
        assert checkpoint.storage_error(raised.value) == (
            f'a checkpoint file in {tmp_path}/checkpoints (no space left on the device)')
    monkeypatch.setattr(ckpt.manager, 'save', lambda *a, **k: (_ for _ in ()).throw(ValueError('not storage')))
    with pytest.raises(ValueError, match='not storage'):  # other failures pass unchanged
        ckpt.save(1, state, Position(1), {}, force=True)
    assert checkpoint.storage_error(OSError(28, 'No space left on device')) == (
        'a file in the workdir (no space left on the device)')
