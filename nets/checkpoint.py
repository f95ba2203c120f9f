"""Orbax save and restore of a whole run: the TrainState (stacked for a sweep) plus JSON metadata (epoch, history,
architecture)."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves the state and metadata after every epoch into `directory`, keeping the newest `max_to_keep`."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        # Synchronous saves: the state is small, and a run killed right after an epoch must find it on disk.
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def save(self, epoch: int, state: Any, metadata: dict) -> None:
        """Writes `state` and the JSON-serialisable `metadata` as the checkpoint of `epoch`."""
        self._manager.save(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata))
        )
        self._manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        """The newest saved epoch, or None when there is no checkpoint."""
        return self._manager.latest_step()

    def metadata(self, epoch: int | None = None) -> dict:
        """The JSON metadata of `epoch` (default newest) alone: the epoch, the history and the architecture, from
        which the caller builds the like-state that `restore` needs."""
        epoch = self.latest_epoch() if epoch is None else epoch
        return self._manager.restore(epoch, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))['metadata']

    def restore(self, like_state: Any, epoch: int | None = None) -> tuple[Any, dict]:
        """The state (with the structure, shapes and dtypes of `like_state`) and metadata of `epoch` (default
        newest)."""
        epoch = self.latest_epoch() if epoch is None else epoch
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        try:
            restored = self._manager.restore(
                epoch,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), metadata=ocp.args.JsonRestore()),
            )
        except ValueError as error:
            # Orbax explains a mismatch over many lines; one is enough to say what to do.
            first = str(error).strip().splitlines()[0].rstrip(':') if str(error).strip() else type(error).__name__
            raise ValueError(
                f'{self._manager.directory}: the checkpoint of epoch {epoch} holds a state of another layout than this '
                f'run builds (another version of the code or another config wrote it); resume it with that, or use a '
                f'fresh workdir ({first})'
            ) from None
        return restored['state'], restored['metadata']

    def close(self) -> None:
        self._manager.close()
