"""Verified checkpoints: a checksum refuses changed bytes that orbax would restore silently, and a damaged or
incomplete checkpoint gives one line instead of orbax's traceback."""

import gc
import glob
import logging
import os
import sys
import time
from types import SimpleNamespace

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import mlp_task, teacher_data
from nets import checkpoint, train


@pytest.fixture(scope='module')
def small():
    """Adam (so the optimizer state holds arrays of its own) on a small teacher problem."""
    task, hparams = mlp_task('adam', 1e-2, batch_size=32, hidden_widths=(32,))
    return task, hparams, teacher_data(8, 128, 32)


@pytest.fixture(scope='module')
def saved_state(small):
    task, hparams, _ = small
    return train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))


def step_dir(directory, epoch):
    return os.path.join(str(directory), str(epoch))


def data_files(directory, epoch):
    """The files that hold the arrays' bytes (OCDBT data files of zarr chunks), largest first."""
    files = glob.glob(os.path.join(step_dir(directory, epoch), 'state', 'ocdbt.process_*', 'd', '*'))
    assert files, f'no array data files under {step_dir(directory, epoch)}'
    return sorted(files, key=os.path.getsize, reverse=True)


def flip_a_byte(directory, epoch):
    """Inverts one byte in the middle of the largest data file: inside a chunk's raw (incompressible) float bytes,
    which still decode, to other values."""
    path = data_files(directory, epoch)[0]
    with open(path, 'r+b') as file:
        file.seek(os.path.getsize(path) // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))


def write_garbage(directory, epoch):
    path = data_files(directory, epoch)[0]
    with open(path, 'wb') as file:
        file.write(np.random.default_rng(0).bytes(os.path.getsize(path)))


def delete_data_files(directory, epoch):
    for path in data_files(directory, epoch):
        os.remove(path)


def delete(relative):
    return lambda directory, epoch: os.remove(os.path.join(step_dir(directory, epoch), relative))


def edit_metadata(change):
    def fault(directory, epoch):
        path = os.path.join(step_dir(directory, epoch), 'metadata', 'metadata')
        with open(path) as file:
            text = file.read()
        with open(path, 'w') as file:
            file.write(change(text))

    return fault


def raw_restore(directory, epoch, like):
    """What orbax alone gives back, without the checksum."""
    manager = ocp.CheckpointManager(str(directory))
    try:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))['state']
    finally:
        manager.close()


def assert_one_line_naming(error, directory, epoch):
    message = str(error)
    assert '\n' not in message
    assert str(directory) in message and f'epoch {epoch}' in message


def test_a_flipped_byte_that_still_decodes_is_refused_by_the_checksum(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1})
    flip_a_byte(tmp_path, 1)
    # Orbax alone restores the damaged checkpoint without a word, with one array changed.
    silently = raw_restore(tmp_path, 1, saved_state)
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(silently), jax.tree.leaves(saved_state))]
    assert sum(changed) == 1
    with pytest.raises(checkpoint.DamagedCheckpoint, match='checksum mismatch: its arrays') as error:
        saver.restore(saved_state)
    assert_one_line_naming(error.value, tmp_path, 1)
    saver.close()


@pytest.mark.parametrize(
    'fault, reason',
    [
        (write_garbage, 'its arrays cannot be read'),
        (delete_data_files, 'its arrays cannot be read'),
        (delete('state/manifest.ocdbt'), 'its array index cannot be read'),
        (delete('state/_METADATA'), 'its tree metadata'),
        (delete('metadata/metadata'), 'its metadata cannot be read'),
        (edit_metadata(lambda text: text[: len(text) // 2]), 'its metadata cannot be read'),
        # Still valid JSON, so only the checksum notices.
        (edit_metadata(lambda text: text.replace('"epoch": 1', '"epoch": 7')), 'checksum mismatch: its metadata'),
    ],
    ids=['garbage', 'data-deleted', 'index-deleted', 'tree-deleted', 'metadata-deleted', 'metadata-cut', 'edited'],
)
def test_a_damaged_or_incomplete_checkpoint_is_refused_with_one_line(saved_state, tmp_path, capfd, fault, reason):
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1})
    fault(tmp_path, 1)
    with pytest.raises(checkpoint.DamagedCheckpoint) as error:
        saver.restore(saved_state)
    assert reason in str(error.value)
    assert_one_line_naming(error.value, tmp_path, 1)
    assert 'Traceback' not in capfd.readouterr().err  # nor orbax's background tracebacks
    saver.close()


async def _read_array_index_and_device_put():  # named as orbax's coroutine that reads one array
    pass


def call_soon_threadsafe():  # named as asyncio's, where TensorStore hands a finished read to the closed loop
    raise RuntimeError('Event loop is closed')


def test_the_reads_a_failed_restore_leaves_behind_report_nothing(saved_state, tmp_path, monkeypatch, caplog):
    """Orbax gives up at the first failed read and closes its event loop with the other reads in flight; their
    errors surface later, as they finish or are collected, at a time that varies from run to run, so they are
    also simulated."""
    reported = []
    monkeypatch.setattr(sys, 'unraisablehook', reported.append)
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1})
    delete_data_files(tmp_path, 1)
    for _ in range(3):
        with pytest.raises(checkpoint.DamagedCheckpoint):
            saver.restore(saved_state)
    time.sleep(0.2)
    gc.collect()
    assert reported == []
    saver.close()
    coroutine = _read_array_index_and_device_put()
    coroutine.close()
    try:
        call_soon_threadsafe()
    except RuntimeError as error:
        closed = error
    elsewhere = RuntimeError('Event loop is closed')  # not from a read handed to a closed loop: reported
    for source, error in [(coroutine, Exception('read failed')), (None, closed), (None, elsewhere)]:
        sys.unraisablehook(
            SimpleNamespace(object=source, exc_type=type(error), exc_value=error,
                            exc_traceback=error.__traceback__, err_msg=None))  # fmt: skip
    assert [each.exc_value for each in reported] == [elsewhere]
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        logging.getLogger('asyncio').error('Task exception was never retrieved\nfuture: <Task coro=<orbax read()>>')
        logging.getLogger('asyncio').error('Task exception was never retrieved\nfuture: <Task coro=<mine()>>')
    assert caplog.messages == ['Task exception was never retrieved\nfuture: <Task coro=<mine()>>']


def test_an_intact_checkpoint_restores_bit_for_bit_without_its_checksum_in_the_metadata(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1, 'history': [{'epoch': 1, 'val_loss': [0.5, float('nan')]}]})
    restored, metadata = saver.restore(saved_state)
    jax.tree.map(np.testing.assert_array_equal, restored, saved_state)
    assert checkpoint.CHECKSUM not in metadata and checkpoint.CHECKSUM not in saver.metadata(1)
    assert metadata['history'][0]['val_loss'][0] == 0.5 and np.isnan(metadata['history'][0]['val_loss'][1])
    saver.close()


def test_a_checkpoint_from_before_checksums_restores_unverified(saved_state, tmp_path):
    manager = ocp.CheckpointManager(str(tmp_path), options=ocp.CheckpointManagerOptions(max_to_keep=2))
    manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(saved_state), metadata=ocp.args.JsonSave({})))
    manager.wait_until_finished()
    manager.close()
    saver = checkpoint.Checkpointer(str(tmp_path))
    restored, metadata = saver.restore(saved_state)
    jax.tree.map(np.testing.assert_array_equal, restored, saved_state)
    assert metadata == {}
    saver.close()


def test_the_checksum_covers_every_leaf_with_its_path_and_dtype(saved_state):
    base = checkpoint.digest(saved_state)
    assert checkpoint.digest(jax.tree.map(np.array, saved_state)) == base  # of the values, wherever they live
    assert checkpoint.digest(saved_state.replace(step=saved_state.step + 1)) != base
    # The same bytes under other paths, or as another dtype, are another checkpoint.
    params = saved_state.params
    swapped = {'dense_0': params['output'], 'output': params['dense_0']}
    assert checkpoint.digest(saved_state.replace(params=swapped)) != base
    assert checkpoint.digest(saved_state.replace(step=saved_state.step.astype(np.uint32))) != base
