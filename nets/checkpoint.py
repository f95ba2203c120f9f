"""Orbax save and restore of a whole run: the TrainState (stacked for a sweep) plus JSON metadata (epoch, history,
architecture), verified by a checksum on restore, keeping the newest checkpoints and the best one."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import traceback
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

CHECKSUM = 'checksum'  # the metadata key of {'arrays': digest(state), 'metadata': sha256 of the rest}
DAMAGED_PREFIX = 'damaged_'  # where restore_newest_good moves a damaged checkpoint, beside the good ones


class DamagedCheckpoint(ValueError):
    """A checkpoint that does not read back as it was written: changed or missing files, unreadable metadata."""

    def __init__(self, directory: str, epoch: int, reason: str):
        super().__init__(f'{directory}: the checkpoint of epoch {epoch} is damaged ({reason})')
        self.epoch, self.reason = epoch, reason


def digest(state: Any) -> str:
    """The sha256 of every array of `state`: its path, dtype, shape and bytes, in tree order."""
    hasher = hashlib.sha256()
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    # One device_get for all leaves overlaps their transfers.
    arrays = jax.device_get([_local_copy(leaf) for _, leaf in flat])
    for (path, _), array in zip(flat, arrays):
        array = np.ascontiguousarray(array)
        hasher.update(f'{jax.tree_util.keystr(path)} {array.dtype.name} {array.shape}\n'.encode())
        hasher.update(array.data)
    return hasher.hexdigest()


def remove(directory: str) -> None:
    """Deletes a variant's checkpoints, which no resume may continue (process 0 deletes; every process waits)."""
    if jax.process_index() == 0:
        shutil.rmtree(directory, ignore_errors=True)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f'remove {directory}')


def _json_digest(metadata: dict) -> str:
    # Canonical JSON: what a JSON round trip gives back (tuples as lists, NaN as NaN) hashes the same.
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


def _local_copy(leaf: Any) -> Any:
    # A state replicated over several hosts is not fully addressable; each host's first shard is the whole array.
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and leaf.sharding.is_fully_replicated:
        return leaf.addressable_data(0)
    return leaf


def _key_name(key: Any) -> str:
    for attribute in ('key', 'name', 'idx'):  # DictKey, GetAttrKey (dataclass field, namedtuple), SequenceKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _layout(tree: Any) -> dict[str, tuple]:
    """{path: (shape, dtype)} of every array leaf; orbax saves dataclasses and namedtuples as dicts, so a path is
    the dotted key names alone."""
    return {
        '.'.join(_key_name(key) for key in path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _reason(error: BaseException) -> str:
    """The first line of the innermost cause, without TensorStore's spec dumps: what broke, in one short line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    text = lines[0].split(' [tensorstore_spec')[0] if lines else ''
    text = text if len(text) <= 240 else text[:237] + '...'
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


# Where an abandoned read's 'Event loop is closed' is raised or handed on: asyncio itself (`_check_closed`, reached
# through `call_soon_threadsafe` or a future's `call_soon`), or orbax and TensorStore (whose bindings report it
# through their own frames).
_READ_PACKAGES = frozenset({'asyncio', 'concurrent', 'orbax', 'tensorstore'})


def _abandoned_read(unraisable: Any) -> bool:
    """Whether an unraisable error is one of orbax's reads left behind by a failed restore: its coroutine being
    collected, or TensorStore finishing it into the event loop orbax has closed, which passes through a frame of
    one of _READ_PACKAGES. The same error with no such frame is someone else's and is reported."""
    if getattr(unraisable.object, '__qualname__', None) == '_read_array_index_and_device_put':
        return True
    frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
    return (
        isinstance(unraisable.exc_value, RuntimeError)
        and str(unraisable.exc_value) == 'Event loop is closed'
        and any(_READ_PACKAGES & set(pathlib.PurePath(frame.filename).parts) for frame in frames)
    )


class _AbandonedTasks(logging.Filter):
    """Drops asyncio's reports of orbax tasks and futures (named by orbax or its OCDBT store) left pending or failed
    when a restore gave up."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        left = message.startswith(
            (
                'Task exception was never retrieved',
                'Task was destroyed but it is pending',
                'Future exception was never retrieved',
            )
        )
        return not (left and any(mark in message for mark in ('orbax', 'OCDBT')))


def _drop_abandoned_reads() -> None:
    """Keeps a failed restore to its one line: orbax closes its event loop with the sibling reads still in flight,
    and as they finish or are collected, at any later time, Python would print each one's traceback."""
    if not getattr(sys.unraisablehook, 'drops_abandoned_reads', False):
        previous = sys.unraisablehook

        def hook(unraisable):
            if not _abandoned_read(unraisable):
                previous(unraisable)

        hook.drops_abandoned_reads = True
        sys.unraisablehook = hook
    asyncio_logger = logging.getLogger('asyncio')
    if not any(isinstance(each, _AbandonedTasks) for each in asyncio_logger.filters):
        asyncio_logger.addFilter(_AbandonedTasks())


def score(metadata: dict, metric: str) -> float | None:
    """The `metric` of the checkpoint's own epoch in its history (the mean over members of the finite values for a
    sweep), or None when it has none."""
    rows = [row for row in metadata.get('history') or [] if row.get('epoch') == metadata.get('epoch')]
    if not rows or metric not in rows[-1]:
        return None
    values = [float(value) for value in np.ravel(np.asarray(rows[-1][metric], dtype=float)) if math.isfinite(value)]
    return float(np.mean(values)) if values else None


# Room beyond a checkpoint's arrays and metadata: orbax's own files (a few kB) and the run's reports written after.
SPACE_MARGIN = 1 << 20


def _check_space(directory: str, epoch: int, state: Any, metadata: dict) -> None:
    """OSError(ENOSPC) naming `directory`, the space a checkpoint needs and the space that is free, before orbax
    starts a write that a full disk would cut short (it would leave a partial step and many lines of tracebacks)."""
    needed = sum(getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(state)) + len(json.dumps(metadata))
    needed += SPACE_MARGIN
    existing = directory
    while not os.path.isdir(existing):  # orbax makes the directory at the first save
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free
    if free < needed:
        mib = lambda count: f'{count / 2**20:.1f} MiB'
        raise OSError(
            errno.ENOSPC,
            f"No space left on device for epoch {epoch}'s checkpoint (it needs about {mib(needed)}; {mib(free)} free)",
            directory,
        )


class Checkpointer:
    """Checksummed checkpoints in `directory`: the newest `max_to_keep` and, given `best=(metric, 'min' | 'max')`, the
    best epoch's by that metric in its history row (for a stacked sweep the mean of the members' finite values)."""

    def __init__(self, directory: str, max_to_keep: int = 2, best: tuple[str, str] | None = None):
        if max_to_keep < 1:
            raise ValueError(f'max_to_keep must be at least 1, got {max_to_keep}')
        if best is not None and best[1] not in ('min', 'max'):
            raise ValueError(f"best must be (metric, 'min' or 'max'), got {best!r}")
        self.directory = os.path.abspath(directory)
        self._max_to_keep, self._best = max_to_keep, best
        self._scores: dict[int, float | None] = {}  # by epoch, each read from its metadata once
        # Orbax keeps every step and `_retain` deletes: its best_fn alone would drop the newest, and its metrics
        # files would be a second copy of the history. Synchronous saves: the state is small, and a run killed
        # right after an epoch must find it on disk.
        options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False)
        # Registered handlers let item_metadata read the saved tree before any restore.
        handlers = {'state': ocp.StandardCheckpointHandler(), 'metadata': ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def save(self, epoch: int, state: Any, metadata: dict) -> None:
        """Writes `state` and the JSON-serialisable `metadata` (plus their checksum) as the checkpoint of `epoch`,
        then deletes the checkpoints that neither the newest `max_to_keep` nor the best need."""
        stored = {**metadata, CHECKSUM: {'arrays': digest(state), 'metadata': _json_digest(metadata)}}
        _check_space(self.directory, epoch, state, stored)
        self._manager.save(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(stored))
        )
        self._manager.wait_until_finished()
        if self._best is not None:
            self._scores[epoch] = score(metadata, self._best[0])
        self._retain()

    def epochs(self) -> list[int]:
        """Every saved epoch, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The newest saved epoch, or None when there is no checkpoint."""
        return self._manager.latest_step()

    def metadata(self, epoch: int | None = None) -> dict:
        """The JSON metadata of `epoch` (default newest) alone: the epoch, the history and the architecture, from
        which the caller builds the like-state that `restore` needs."""
        return self._verified_metadata(self.latest_epoch() if epoch is None else epoch)[0]

    def restore(self, like_state: Any, epoch: int | None = None) -> tuple[Any, dict]:
        """The state (with the structure, shapes and dtypes of `like_state`) and metadata of `epoch` (default newest);
        raises DamagedCheckpoint when its files do not give back what was saved."""
        epoch = self.latest_epoch() if epoch is None else epoch
        metadata, expected = self._verified_metadata(epoch)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        self._check_layout(abstract, epoch)
        try:
            state = self._manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as error:  # TensorStore raises bare Exceptions; the layout matched, so the files are bad
            _drop_abandoned_reads()
            raise self._damaged(epoch, f'its arrays cannot be read: {_reason(error)}') from None
        state = state['state']
        if expected is not None and digest(state) != expected:
            raise self._damaged(epoch, 'checksum mismatch: its arrays changed on disk after the save')
        return state, metadata

    def restore_newest_good(self, make_like: Callable[[dict], Any], log: Callable[[str], None]) -> tuple[Any, dict]:
        """The state and metadata of the newest intact checkpoint, each tried into `make_like(its metadata)`; logs one
        line for each damaged newer one and moves it aside (to damaged_<epoch>). ValueError when none is intact."""
        damaged = []  # newest first
        for epoch in reversed(self.epochs()):
            try:
                state, metadata = self.restore(make_like(self.metadata(epoch)), epoch)
            except DamagedCheckpoint as error:
                damaged.append((epoch, error))
                continue
            for bad, error in damaged:
                # Out of the way, so that the resumed run can save that epoch again, but kept for a look.
                kept = self._move_aside(bad)
                log(f'{error}; resuming from epoch {epoch} (the damaged one is kept as {kept})')
            # A run killed between a save and its clean-up left one checkpoint too many; after a variant's last
            # epoch no later save would delete it.
            self._retain()
            return state, metadata
        if not damaged:
            raise ValueError(f'{self.directory}: holds no checkpoint to resume')
        reasons = '; '.join(f'epoch {epoch}: {error.reason}' for epoch, error in damaged)
        raise ValueError(f'{self.directory}: no checkpoint restores intact ({reasons}); start again in a fresh workdir')

    def close(self) -> None:
        self._manager.close()

    def _damaged(self, epoch: int, reason: str) -> DamagedCheckpoint:
        return DamagedCheckpoint(self.directory, epoch, reason)

    def _verified_metadata(self, epoch: int) -> tuple[dict, str | None]:
        """The metadata, checked against its checksum, and the checksum of the arrays; both checksums are None for
        a checkpoint from before checksums, which restores unverified."""
        try:
            metadata = self._manager.restore(epoch, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
            metadata = metadata['metadata']
        except Exception as error:  # a missing or unparsable file: orbax raises whatever its reader raised
            raise self._damaged(epoch, f'its metadata cannot be read: {_reason(error)}') from None
        if not isinstance(metadata, dict):
            raise self._damaged(epoch, f'its metadata is a {type(metadata).__name__}, not a dict')
        metadata = dict(metadata)
        checksum = metadata.pop(CHECKSUM, None)
        if checksum is None:
            return metadata, None
        # Checked before the caller builds a like-state from it: a changed architecture would mislead that.
        if not isinstance(checksum, dict) or set(checksum) != {'arrays', 'metadata'}:
            raise self._damaged(epoch, f'its checksum entry is malformed: {checksum!r:.80}')
        if checksum['metadata'] != _json_digest(metadata):
            raise self._damaged(epoch, 'checksum mismatch: its metadata changed on disk after the save')
        return metadata, checksum['arrays']

    def _check_layout(self, abstract: Any, epoch: int) -> None:
        """Refuses a like-state of another layout than the saved one: a mistake of the caller, not damage, so
        restore_newest_good must not fall back from it to an older checkpoint."""
        try:
            saved = self._manager.item_metadata(epoch)['state']
        except Exception as error:
            _drop_abandoned_reads()
            raise self._damaged(epoch, f'its array index cannot be read: {_reason(error)}') from None
        if saved is None:  # orbax's answer when the tree metadata file (state/_METADATA) is missing or unreadable
            raise self._damaged(epoch, 'its tree metadata (state/_METADATA) cannot be read')
        have = _layout(saved.tree)
        want = _layout(abstract)
        if want == have:
            return
        lacks, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
        changed = sorted(path for path in want.keys() & have.keys() if want[path] != have[path])
        if lacks:
            first = f'the checkpoint lacks {lacks[0]}'
        elif extra:
            first = f'this run has no {extra[0]}'
        else:
            first = f'{changed[0]} is {have[changed[0]]} there, {want[changed[0]]} here'
        more = len(lacks) + len(extra) + len(changed) - 1
        raise ValueError(
            f'{self.directory}: the checkpoint of epoch {epoch} holds a state of another layout than this run builds '
            f'(another version of the code or another config wrote it); resume it with that, or use a fresh workdir '
            f'({first}{f", and {more} more differences" if more else ""})'
        )

    def _retain(self) -> None:
        """Deletes every checkpoint but the newest `max_to_keep` and the best scored one (the earliest of ties,
        as early stopping counts only a strict improvement as one)."""
        epochs = self.epochs()
        keep = set(epochs[-self._max_to_keep :])
        if self._best is not None:
            metric, mode = self._best
            sign = 1.0 if mode == 'min' else -1.0
            scored = [(sign * value, epoch) for epoch in epochs if (value := self._score(epoch, metric)) is not None]
            if scored:
                keep.add(min(scored)[1])
        for epoch in epochs:
            if epoch not in keep:
                self._manager.delete(epoch)
                self._scores.pop(epoch, None)

    def _score(self, epoch: int, metric: str) -> float | None:
        if epoch not in self._scores:  # saved by an earlier run of this directory
            try:
                self._scores[epoch] = score(self.metadata(epoch), metric)
            except DamagedCheckpoint:
                self._scores[epoch] = None
        return self._scores[epoch]

    def _move_aside(self, epoch: int) -> str:
        """Renames the checkpoint of `epoch` to a free damaged_<epoch>[.n] (not a step name, so orbax skips it)."""
        name, count = f'{DAMAGED_PREFIX}{epoch}', 0
        while os.path.exists(os.path.join(self.directory, name)):
            count += 1
            name = f'{DAMAGED_PREFIX}{epoch}.{count}'
        if ocp.multihost.is_primary_host(0):
            os.rename(os.path.join(self.directory, str(epoch)), os.path.join(self.directory, name))
        ocp.multihost.sync_global_processes(f'checkpoint_move_aside_{epoch}')
        self._manager.reload()
        self._scores.pop(epoch, None)
        return name
