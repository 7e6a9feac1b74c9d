"""Orbax checkpoints of a training run: the train state (online params, EMA target, optimiser
state, step), the data iterator position (one JSON per process, grain's handler) and a
metadata JSON (seed, config, mesh) saved together under WORKDIR/checkpoints/<step>/.

Saves are asynchronous: the arrays are copied off the devices and written in the
background while training goes on. A checkpoint becomes visible only once complete (orbax
writes to a temporary directory and renames it when finalised), so a half-written
checkpoint is never taken as the latest. Restoring takes the target's shardings, so a
run may resume on a different mesh.

Integrity: every save records a content checksum of each state array in the metadata
(`state_checksums`: a uint32 per array, the same on any mesh); a restore recomputes and compares
them. `restore_newest` walks back from the newest checkpoint: one that fails to restore or to
verify is reported in one line, moved to `<directory>_damaged/<step>` (kept, out of the way of
later saves) and the next older one is tried. `python -m vjepa_jax.tools.verify_checkpoints`
checks a workdir's checkpoints without a run.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

STATE, DATA, META = 'state', 'data', 'meta'


class CheckpointDamaged(Exception):
    """A checkpoint that does not restore or does not match its checksums."""


def _leaf_checksum(x: jax.Array) -> jax.Array:
    """uint32 of an array's bits: sum over words of (word ^ i * golden) * (2 i + 1) mod 2^32.
    Integer addition is associative, so any sharding gives the same value; a changed word
    always changes it."""
    if x.dtype.itemsize in (4, 8):  # 8-byte elements: two words each
        words = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    else:  # 1- and 2-byte types: each element its own word
        unsigned = {1: jnp.uint8, 2: jnp.uint16}[x.dtype.itemsize]
        words = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)
    i = jnp.arange(words.shape[0], dtype=jnp.uint32)
    return jnp.sum((words ^ (i * jnp.uint32(0x9E3779B1))) * (2 * i + 1), dtype=jnp.uint32)


_tree_checksums = jax.jit(lambda tree: jax.tree.map(_leaf_checksum, tree))


def state_checksums(state: Any) -> dict:
    """{array path: uint32 checksum} of a state pytree (on its devices; only the sums come back)."""
    sums = jax.device_get(_tree_checksums(state))
    return {_path_name(path): int(v) for path, v in jax.tree_util.tree_flatten_with_path(sums)[0]}


def _path_name(path) -> str:
    """'params/encoder/w', the same whether a level is a dict, a namedtuple (optax states) or
    the plain containers a checkpoint's own metadata restores them as."""
    names = []
    for key in path:
        for attr in ('key', 'name', 'idx'):  # DictKey, GetAttrKey, SequenceKey
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
        else:
            names.append(str(key))
    return '/'.join(names)


def check_checksums(state: Any, saved: dict, step: int) -> None:
    """Raise CheckpointDamaged naming the first array whose checksum differs from `saved`."""
    now = state_checksums(state)
    if set(now) != set(saved):
        missing = sorted(set(saved) ^ set(now))[:3]
        raise CheckpointDamaged(f'checkpoint {step}: its arrays differ from its checksum list ({missing})')
    bad = [k for k in saved if saved[k] != now[k]]
    if bad:
        raise CheckpointDamaged(f'checkpoint {step}: content of {len(bad)} array(s) does not match the checksum '
                                f'saved with it ({bad[0]}{", ..." if len(bad) > 1 else ""})')


class StorageError(RuntimeError):
    """A checkpoint or metrics write failed for lack of space or permission (one line)."""
    one_line = True  # config.run prints it as `error: ...`


_STORAGE_ERRNOS = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
                   errno.EACCES: 'permission denied', errno.EPERM: 'operation not permitted',
                   errno.EROFS: 'read-only filesystem'}


def _storage_cause(e: BaseException) -> tuple | None:
    """(errno, file name or None) of the first full-disk, quota, permission or read-only failure
    in e's chain (orbax's and TensorStore's own errors say so in their text); None otherwise."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
            return e.errno, e.filename
        text = str(e)
        for code in _STORAGE_ERRNOS:
            if os.strerror(code) in text:
                return code, None
        e = e.__cause__ or e.__context__
    return None


def storage_error(e: BaseException) -> str | None:
    """'PATH (no space left on the device)' when e, or an exception it came from, is a full disk,
    a quota, a permission or a read-only filesystem; None otherwise."""
    found = _storage_cause(e)
    if found is None:
        return None
    code, name = found
    return f'{name or "a file in the workdir"} ({_STORAGE_ERRNOS[code]})'


class _StorageNoise(logging.Filter):
    """After a write fails for space or permission, orbax's threads, asyncio and TensorStore's
    callbacks each print the failure again, as tracebacks, while the run stops; the run says it
    once (StorageError). This drops those reports, and only those."""
    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += ' ' + str(record.exc_info[1])
        if any(os.strerror(code) in text for code in _STORAGE_ERRNOS):
            _StorageNoise.seen = True
            return False
        return True

    @staticmethod
    def install() -> None:
        if any(isinstance(f, _StorageNoise) for f in logging.getLogger('absl').filters):
            return
        for name in ('absl', 'asyncio', 'concurrent.futures'):
            logging.getLogger(name).addFilter(_StorageNoise())
        previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

        def hook(kind, value, tb):
            if not _closed_loop_echo(value, tb):
                previous_hook(kind, value, tb)

        def unraisable(report):  # where TensorStore's callbacks report (they run on its own threads)
            if not _closed_loop_echo(report.exc_value, report.exc_traceback):
                previous_unraisable(report)
        sys.excepthook, sys.unraisablehook = hook, unraisable


def _closed_loop_echo(value: BaseException | None, tb) -> bool:
    """True for a TensorStore callback into the event loop that orbax closed after a write failed."""
    tb = tb if tb is not None else getattr(value, '__traceback__', None)
    frames = [f.name for f in traceback.extract_tb(tb)] if tb is not None else []
    return isinstance(value, RuntimeError) and 'Event loop is closed' in str(value) and \
        'call_soon_threadsafe' in frames


def close_quietly(closers: list[Callable[[], Any]], log: Callable = print) -> None:
    """Run each closer (the checkpointer's close, the metrics') after a failure: their own
    errors (a full disk again) are said in a line each and never hide the first one."""
    for close in closers:
        try:
            close()
        except Exception as e:  # noqa: BLE001
            log(f'(while stopping: {one_line(e)})')


def stopped(e: BaseException, ckpt: 'Checkpointer', step: int, closers: list[Callable[[], Any]],
            log: Callable = print) -> BaseException:
    """After a training loop failed with `e` at `step`: close quietly, then -> the exception to
    raise: `e` itself, or for a full disk / quota / permission failure a one-line StorageError
    naming what could not be written and the newest checkpoint that verifies (the failed write's
    echoes from orbax's and TensorStore's threads kept off the terminal)."""
    full = storage_error(e)
    with stderr_aside(full is not None):
        close_quietly(closers, log)
        last = Checkpointer(ckpt.directory).latest_verified_step() if full else None
    if full is None:
        return e
    # the write's abandoned coroutines would warn once more as the interpreter exits
    warnings.filterwarnings('ignore', message="coroutine '.*' was never awaited", category=RuntimeWarning)
    return StorageError(
        f'could not write {full} at step {step}: stopped; the newest checkpoint that verifies is '
        f'{f"step {last}" if last is not None else "none"} in {ckpt.directory} (free space or fix permissions, '
        f'then rerun to resume)')


@contextlib.contextmanager
def stderr_aside(active: bool = True):
    """Send file descriptor 2 to a temporary file for the block (what the writer threads of a
    write that already failed print there directly while they are stopped)."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def one_line(e: BaseException) -> str:
    """'Type: first line of the message' (at most 160 characters of it)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f'{type(e).__name__}: {lines[0][:160] if lines else ""}'


def _path(directory: str) -> str:
    return directory if '://' in directory else os.path.abspath(directory)


class Checkpointer:
    """Save every `every_steps`, keep the last `keep_last` plus every `keep_every`-th step."""

    def __init__(self, directory: str, *, every_steps: int = 1000, keep_last: int = 3, keep_every: int = 0,
                 async_save: bool = True):
        self.directory = _path(directory)
        self.every_steps = max(1, every_steps)
        _StorageNoise.install()
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=self.every_steps, max_to_keep=keep_last or None, keep_period=keep_every or None,
            enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler(),
                           META: ocp.JsonCheckpointHandler()})

    @contextlib.contextmanager
    def _naming_failed_writes(self):
        """A storage failure inside orbax (whose file writes raise OSError without a file name,
        or TensorStore errors that give one only in their text) -> OSError naming this directory."""
        try:
            yield
        except Exception as e:
            found = _storage_cause(e)
            if found is None or found[1]:
                raise
            raise OSError(found[0], os.strerror(found[0]), f'a checkpoint file in {self.directory}') from e

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list:
        return list(self.manager.all_steps())

    def should_save(self, step: int) -> bool:
        """Arithmetic only (the manager's own check touches the filesystem)."""
        return step % self.every_steps == 0

    def save(self, step: int, state: Any, data_iterator: Any, meta: dict, force: bool = False) -> bool:
        """Start saving (returns at once when async). data_iterator: anything with
        get_state() -> bytes / set_state(bytes) (data.stream.DataStream) or a grain iterator."""
        meta = {**meta, 'checksums': state_checksums(state)}
        if force or self.should_save(step):
            self.check_space(step, state)
        with self._naming_failed_writes():
            return self.manager.save(step, args=ocp.args.Composite(**{
                STATE: ocp.args.StandardSave(state), DATA: grain.checkpoint.CheckpointSave(data_iterator),
                META: ocp.args.JsonSave(meta)}), force=force)

    def check_space(self, step: int, state: Any) -> None:
        """OSError(ENOSPC) before writing anything when the checkpoint directory's filesystem has
        less free space than this process's share of `state` takes uncompressed (local paths),
        so that a full disk stops the run in one line instead of inside the writer's threads."""
        if '://' in str(self.directory):
            return
        need = sum(shard.data.nbytes for leaf in jax.tree.leaves(state) if isinstance(leaf, jax.Array)
                   for shard in leaf.addressable_shards if shard.replica_id == 0)
        with self._naming_failed_writes():  # the previous save's bytes are on disk (and counted) first
            self.manager.wait_until_finished()
        path = os.path.abspath(self.directory)
        while not os.path.exists(path):
            path = os.path.dirname(path)
        free = shutil.disk_usage(path).free
        need = 1.1 * need + (1 << 20)  # the written files take a few % more than the arrays
        if free < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                          f'checkpoint {step} in {self.directory} (it needs about {need / 2**20:.1f} MiB, '
                          f'{free / 2**20:.1f} MiB are free)')

    def restore(self, step: int, abstract_state: Any) -> tuple:
        """-> (state placed by abstract_state's shardings, meta dict), its checksums verified
        (CheckpointDamaged otherwise; checkpoints from before checksums restore unchecked)."""
        items = {STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        if 'checksums' in out[META]:
            check_checksums(out[STATE], out[META]['checksums'], step)
        return out[STATE], out[META]

    def abstract_state(self, step: int) -> Any:
        """The saved state's shapes and dtypes, on this process's first device (for checking a
        checkpoint without the run's config)."""
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        tree = self.manager.item_metadata(step)[STATE]
        return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree)

    def verify(self, step: int, abstract_state: Any = None) -> str | None:
        """None when checkpoint `step` restores and matches its checksums, else what is wrong
        (one line). abstract_state: the layout to restore to (default: as saved, one device)."""
        try:
            self._restore_verified(step, self.abstract_state(step) if abstract_state is None else abstract_state)
            name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
            data_file = epath.Path(self.directory, str(step), DATA, name)
            if data_file.exists():
                json.loads(data_file.read_text())
        except CheckpointDamaged as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 - any failure to read is damage, said in one line
            return f'checkpoint {step}: does not restore ({one_line(e)})'
        return None

    def latest_verified_step(self) -> int | None:
        """The newest checkpoint that verifies, or None (walks back; moves nothing)."""
        return next((s for s in sorted(self.all_steps(), reverse=True) if self.verify(s) is None), None)

    def restore_newest(self, abstract_state: Any, data_iterator: Any = None, check_meta: Callable | None = None,
                       log: Callable = print) -> tuple:
        """-> (step, state, meta) of the newest checkpoint that restores and verifies, the data
        iterator set to its position when given; (None, None, None) when there is none.
        check_meta(meta, step) may raise a UsageError (a config mismatch: not damage). A damaged
        checkpoint is said in one line and moved to <directory>_damaged/<step>."""
        steps = sorted(self.all_steps(), reverse=True)
        for step in steps:
            try:
                return (step, *self._restore_verified(step, abstract_state, data_iterator, check_meta))
            except CheckpointDamaged as e:
                moved = self._move_aside(step)
                older = [s for s in steps if s < step]
                log(f'{e}; moved to {moved}; ' + (f'trying checkpoint {older[0]}' if older else 'no older checkpoint'))
        return None, None, None

    def _restore_verified(self, step: int, abstract_state: Any, data_iterator: Any = None,
                          check_meta: Callable | None = None) -> tuple:
        """-> (state, meta with 'data_restored'); any failure to read is CheckpointDamaged (one
        line), a check_meta UsageError passes through."""
        try:
            meta = self.restore_meta(step)
        except Exception as e:  # noqa: BLE001
            raise CheckpointDamaged(f'checkpoint {step}: its metadata does not read ({one_line(e)})') from None
        if check_meta is not None:
            check_meta(meta, step)
        try:
            state, meta = self.restore(step, abstract_state)
            has_data = data_iterator is not None and self.restore_data(step, data_iterator)
        except CheckpointDamaged:
            raise
        except Exception as e:  # noqa: BLE001
            raise CheckpointDamaged(f'checkpoint {step}: does not restore ({one_line(e)})') from None
        return state, {**meta, 'data_restored': has_data}

    def _move_aside(self, step: int) -> str:
        """Move checkpoint `step` to <directory>_damaged/<step> (a later save may reuse the step)."""
        src = epath.Path(self.directory, str(step))
        dst = epath.Path(str(self.directory).rstrip('/') + '_damaged', str(step))
        if jax.process_index() == 0:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst) if '://' not in str(dst) else dst.rmtree()
            src.rename(dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f'checkpoint {step} moved aside')
        self.manager.reload()
        return str(dst)

    def restore_data(self, step: int, data_iterator: Any) -> bool:
        """Set data_iterator to this process's saved position; False when the checkpoint has none
        for this process (written by another number of processes, or converted)."""
        name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
        if not epath.Path(self.directory, str(step), DATA, name).exists():
            return False
        restore = grain.checkpoint.CheckpointRestore(data_iterator)
        self.manager.restore(step, args=ocp.args.Composite(**{DATA: restore}))
        return True

    def restore_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]

    def wait(self) -> None:
        """Block until background saves are on disk."""
        with self._naming_failed_writes():
            self.manager.wait_until_finished()

    def close(self) -> None:
        with self._naming_failed_writes():
            self.manager.wait_until_finished()
            self.manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree` (arrays or shape structs) carrying `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
