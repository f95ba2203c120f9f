"""Verified checkpoints: a checksum refuses changed bytes that orbax would restore silently, a damaged or incomplete
checkpoint gives one line and resume falls back to the one before, and retention keeps the newest and the best."""

import errno
import gc
import glob
import logging
import os
import shutil
import sys
import time
import traceback
from types import SimpleNamespace

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import mlp_task, teacher_data
from nets import checkpoint, runner, train

EPOCHS = 3


def quiet(_):
    pass


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


def on_disk(directory):
    """The epochs whose checkpoints are in `directory`."""
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


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


@pytest.mark.reliability
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


@pytest.mark.reliability
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


def raised_in(path: str) -> RuntimeError:
    """The closed loop's error as a function in a file at `path` raises it."""
    namespace = {}
    exec(compile('def done():\n    raise RuntimeError("Event loop is closed")', path, 'exec'), namespace)
    try:
        namespace['done']()
    except RuntimeError as error:
        return error


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
    assert reported == [], [traceback.format_tb(each.exc_traceback) for each in reported]
    saver.close()
    coroutine = _read_array_index_and_device_put()
    coroutine.close()
    closed = raised_in('/lib/asyncio/base_events.py')  # where TensorStore hands a finished read to the closed loop
    handed_on = raised_in('/site/tensorstore/fake.py')  # the same error handed on by a frame of TensorStore's
    elsewhere = RuntimeError('Event loop is closed')  # not from a read handed to a closed loop: reported
    for source, error in [(coroutine, Exception('read failed')), (None, closed), (None, handed_on), (None, elsewhere)]:
        sys.unraisablehook(
            SimpleNamespace(object=source, exc_type=type(error), exc_value=error,
                            exc_traceback=error.__traceback__, err_msg=None))  # fmt: skip
    assert [each.exc_value for each in reported] == [elsewhere]
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        logging.getLogger('asyncio').error('Task exception was never retrieved\nfuture: <Task coro=<orbax read()>>')
        logging.getLogger('asyncio').error('Task exception was never retrieved\nfuture: <Task coro=<mine()>>')
        logging.getLogger('asyncio').error('Future exception was never retrieved\nfuture: <Future finished '
                                           "exception=ValueError('Error reading in OCDBT database')>")  # fmt: skip
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


# Resume: the runner falls back to the newest checkpoint that restores intact.


@pytest.fixture(scope='module')
def whole_run(small, tmp_path_factory):
    """Two members trained for EPOCHS epochs with a checkpoint after each: the final state, runs and directory."""
    task, hparams, data = small
    directory = str(tmp_path_factory.mktemp('whole') / 'checkpoints')
    state, runs = runner.train_variant(
        task, hparams, runner.grid([0, 1]), data, None, epochs=EPOCHS, name='v', checkpoint_dir=directory, log=quiet
    )
    return state, runs, directory


def resume(small, directory, lines):
    task, hparams, data = small
    return runner.train_variant(
        task, hparams, runner.grid([0, 1]), data, None, epochs=EPOCHS, name='v', checkpoint_dir=directory,
        resume=True, log=lines.append)  # fmt: skip


@pytest.mark.reliability
@pytest.mark.parametrize(
    'fault, reason',
    [
        (flip_a_byte, 'checksum mismatch'),
        (delete_data_files, 'its arrays cannot be read'),
        (edit_metadata(lambda text: '{'), 'its metadata cannot be read'),
    ],
    ids=['flipped', 'data-deleted', 'metadata-unreadable'],
)
def test_resume_falls_back_from_a_damaged_newest_checkpoint_to_the_same_final_bits(
    small, whole_run, tmp_path, fault, reason
):
    straight, straight_runs, template = whole_run
    assert on_disk(template) == [EPOCHS - 1, EPOCHS]
    directory = str(tmp_path / 'checkpoints')
    shutil.copytree(template, directory)
    fault(directory, EPOCHS)
    lines = []
    resumed, resumed_runs = resume(small, directory, lines)
    damaged = [line for line in lines if 'damaged' in line]
    assert len(damaged) == 1 and '\n' not in damaged[0]
    assert damaged[0].startswith(f'{directory}: the checkpoint of epoch {EPOCHS} is damaged (') and reason in damaged[0]
    assert damaged[0].endswith(f'; resuming from epoch {EPOCHS - 1} (the damaged one is kept as damaged_{EPOCHS})')
    assert f'v: resumed after epoch {EPOCHS - 1}' in lines
    assert [line.split()[:3] for line in lines if line.startswith('v epoch')] == [['v', 'epoch', str(EPOCHS)]]
    jax.tree.map(np.testing.assert_array_equal, resumed, straight)
    for label, run in straight_runs.items():
        for got, want in zip(resumed_runs[label]['history'], run['history'], strict=True):
            assert {k: v for k, v in got.items() if 'seconds' not in k} == {
                k: v for k, v in want.items() if 'seconds' not in k
            }
    # The epoch is saved again, intact, and the damaged one stays beside it for a look.
    assert sorted(os.listdir(directory)) == sorted([str(EPOCHS - 1), str(EPOCHS), f'damaged_{EPOCHS}'])
    saver = checkpoint.Checkpointer(directory)
    restored, metadata = saver.restore(straight)
    saver.close()
    assert metadata['epoch'] == EPOCHS
    jax.tree.map(np.testing.assert_array_equal, restored, straight)


def test_restore_newest_good_gives_the_exact_state_of_the_epoch_before(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path))
    later = saved_state.replace(params=jax.tree.map(lambda leaf: leaf + 1.0, saved_state.params))
    saver.save(1, saved_state, {'epoch': 1})
    saver.save(2, later, {'epoch': 2})
    flip_a_byte(tmp_path, 2)
    lines, asked = [], []
    restored, metadata = saver.restore_newest_good(lambda metadata: asked.append(metadata) or saved_state, lines.append)
    assert metadata == {'epoch': 1} and asked == [{'epoch': 2}, {'epoch': 1}]  # each like-state from its own metadata
    jax.tree.map(np.testing.assert_array_equal, restored, saved_state)
    assert len(lines) == 1 and 'epoch 2 is damaged (checksum mismatch: its arrays' in lines[0]
    assert saver.epochs() == [1] and saver.latest_epoch() == 1
    saver.save(2, later, {'epoch': 2})  # the run can save the epoch again
    assert saver.epochs() == [1, 2]
    flip_a_byte(tmp_path, 2)
    saver.restore_newest_good(lambda metadata: saved_state, lines.append)
    assert lines[-1].endswith('(the damaged one is kept as damaged_2.1)')
    assert sorted(os.listdir(tmp_path)) == ['1', 'damaged_2', 'damaged_2.1']
    saver.close()


def test_a_like_state_is_never_built_from_metadata_that_changed_on_disk(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1, 'architecture': {'hidden_widths': [32]}})
    saver.save(2, saved_state, {'epoch': 2, 'architecture': {'hidden_widths': [32]}})
    edit_metadata(lambda text: text.replace('[32]', '[33]'))(tmp_path, 2)
    asked = []
    _, metadata = saver.restore_newest_good(lambda metadata: asked.append(metadata) or saved_state, quiet)
    assert metadata['epoch'] == 1 and [each['epoch'] for each in asked] == [1]
    saver.close()


@pytest.mark.reliability
def test_when_no_checkpoint_is_intact_resume_is_refused_with_one_line(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1})
    saver.save(2, saved_state, {'epoch': 2})
    flip_a_byte(tmp_path, 2)
    delete('metadata/metadata')(tmp_path, 1)
    lines = []
    with pytest.raises(ValueError, match='no checkpoint restores intact') as error:
        saver.restore_newest_good(lambda metadata: saved_state, lines.append)
    message = str(error.value)
    assert '\n' not in message and str(tmp_path) in message
    assert 'epoch 2: checksum mismatch: its arrays' in message and 'epoch 1: its metadata cannot be read' in message
    assert lines == [] and saver.epochs() == [1, 2]  # nothing moved while nothing restores
    saver.close()


def test_a_like_state_of_another_layout_is_refused_not_taken_for_damage(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(1, saved_state, {'epoch': 1})
    saver.save(2, saved_state, {'epoch': 2})
    masked = saved_state.replace(masks=jax.tree.map(lambda leaf: np.ones(leaf.shape, bool), saved_state.params))
    lines = []
    with pytest.raises(ValueError, match='another layout') as error:
        saver.restore_newest_good(lambda metadata: masked, lines.append)
    assert not isinstance(error.value, checkpoint.DamagedCheckpoint)
    assert 'the checkpoint lacks masks.dense_0.bias, and 3 more differences' in str(error.value)
    assert lines == [] and saver.epochs() == [1, 2]
    saver.close()


# Retention: the newest max_to_keep and the best by the monitored metric.


def save_scores(saver, state, scores, epochs=None):
    """Saves `epochs` (default all) of a run whose val_loss of epoch e was scores[e - 1]."""
    for epoch in epochs or range(1, len(scores) + 1):
        rows = [{'epoch': e, 'val_loss': value} for e, value in enumerate(scores[:epoch], start=1)]
        saver.save(epoch, state, {'epoch': epoch, 'history': rows})


@pytest.mark.parametrize(
    'mode, scores, kept',
    [
        ('min', [3.0, 1.0, 2.0, 4.0, 5.0], [2, 4, 5]),
        ('max', [0.1, 0.9, 0.5, 0.3, 0.2], [2, 4, 5]),
        ('min', [1.0, 1.0, 2.0, 3.0], [1, 3, 4]),  # the earliest of equal bests, as early stopping counts it
        ('min', [5.0, 4.0, 3.0, 2.0], [3, 4]),  # the best is among the newest
        # A sweep: the mean over members of the finite values (NaN where a member had stopped).
        ('min', [[9.0, 9.0], [2.0, 2.0], [1.0, float('nan')], [3.0, 3.0], [4.0, 4.0]], [3, 4, 5]),
        ('min', [[float('nan')] * 2, [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]], [2, 3, 4]),  # NaN alone is no best
    ],
    ids=['min', 'max', 'tie', 'best-is-newest', 'sweep', 'all-nan'],
)
def test_retention_keeps_the_newest_and_the_best(saved_state, tmp_path, mode, scores, kept):
    saver = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2, best=('val_loss', mode))
    save_scores(saver, saved_state, scores)
    assert saver.epochs() == kept and on_disk(tmp_path) == kept
    saver.close()


def test_retention_without_a_metric_keeps_the_newest_alone(saved_state, tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
    save_scores(saver, saved_state, [3.0, 1.0, 2.0, 4.0])
    assert on_disk(tmp_path) == [3, 4]
    saver.close()


def test_retention_reads_the_best_of_an_earlier_run_from_its_checkpoint(saved_state, tmp_path):
    scores = [1.0, 2.0, 3.0, 4.0, 0.5, 6.0, 7.0]
    first = checkpoint.Checkpointer(str(tmp_path), best=('val_loss', 'min'))
    save_scores(first, saved_state, scores, range(1, 4))
    first.close()
    assert on_disk(tmp_path) == [1, 2, 3]
    second = checkpoint.Checkpointer(str(tmp_path), best=('val_loss', 'min'))
    save_scores(second, saved_state, scores, [4])
    assert on_disk(tmp_path) == [1, 3, 4]  # epoch 1's score read from its checkpoint
    save_scores(second, saved_state, scores, range(5, 8))
    assert on_disk(tmp_path) == [5, 6, 7]
    second.close()


def test_a_run_with_early_stopping_keeps_the_best_epoch_by_its_monitor_and_mode(small, tmp_path):
    """Early stopping on train_loss in 'max' mode (patience long enough never to stop): the best is epoch 1, where
    the loss is highest; a saver that ignored the mode would keep the newest two alone."""
    _, _, data = small
    task, hparams = mlp_task(
        'adam', 1e-2, batch_size=32, hidden_widths=(32,),
        early_stopping={'monitor': 'train_loss', 'mode': 'max', 'patience': 10})  # fmt: skip
    directory = tmp_path / 'checkpoints'
    _, runs = runner.train_variant(
        task, hparams, runner.grid([0, 1]), data, None, epochs=4, name='es', checkpoint_dir=str(directory), log=quiet
    )
    losses = [np.mean(row['train_loss']) for row in next(iter(runs.values()))['history']]
    assert np.argmax(losses) == 0  # what the test relies on: the loss falls
    assert on_disk(directory) == [1, 3, 4]


@pytest.mark.reliability
def test_a_save_that_the_disk_cannot_hold_is_refused_before_any_write(saved_state, tmp_path, monkeypatch):
    saver = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
    saver.save(1, saved_state, {'epoch': 1})
    needed = sum(leaf.nbytes for leaf in jax.tree.leaves(saved_state))
    free = needed // 2  # less than the arrays alone
    monkeypatch.setattr(checkpoint.shutil, 'disk_usage', lambda path: shutil._ntuple_diskusage(10 * needed, 0, free))
    with pytest.raises(OSError) as error:
        saver.save(2, saved_state, {'epoch': 2})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / 'checkpoints')
    assert "epoch 2's checkpoint" in error.value.strerror and f'{free / 2**20:.1f} MiB free' in error.value.strerror
    assert saver.epochs() == [1] and sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']  # nothing half-written
