"""Orbax checkpoints of a training run: the train state (online params, EMA target, optimiser
state, step), the data iterator position (one JSON per process, grain's handler) and a
metadata JSON (seed, config, mesh) saved together under WORKDIR/checkpoints/<step>/.

Saves are asynchronous: the arrays are copied off the devices and written in the
background while training goes on. A checkpoint becomes visible only once complete (orbax
writes to a temporary directory and renames it when finalised), so a half-written
checkpoint is never taken as the latest. Restoring takes the target's shardings, so a
run may resume on a different mesh.
"""
from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

STATE, DATA, META = 'state', 'data', 'meta'


def _path(directory: str) -> str:
    return directory if '://' in directory else os.path.abspath(directory)


class Checkpointer:
    """Save every `every_steps`, keep the last `keep_last` plus every `keep_every`-th step."""

    def __init__(self, directory: str, *, every_steps: int = 1000, keep_last: int = 3, keep_every: int = 0,
                 async_save: bool = True):
        self.directory = _path(directory)
        self.every_steps = max(1, every_steps)
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=self.every_steps, max_to_keep=keep_last or None, keep_period=keep_every or None,
            enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler(),
                           META: ocp.JsonCheckpointHandler()})

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
        return self.manager.save(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardSave(state), DATA: grain.checkpoint.CheckpointSave(data_iterator),
            META: ocp.args.JsonSave(meta)}), force=force)

    def restore(self, step: int, abstract_state: Any) -> tuple:
        """-> (state placed by abstract_state's shardings, meta dict)."""
        items = {STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return out[STATE], out[META]

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
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree` (arrays or shape structs) carrying `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
