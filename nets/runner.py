"""What every experiment does with the core: build an MLP task from a config, put data on the device, and train
a variant over its seeds as one vmapped sweep, with a checkpoint and a progress line after every epoch.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from nets import checkpoint, data as data_lib, early_stopping as early_stopping_lib, models, parallel, report, train

# MLP fields and optimizer settings that may differ between the members of one compiled sweep.
SWEEPABLE = ('learning_rate', 'input_dropout', 'hidden_dropout', 'init_scale', 'negative_slope')


def mlp_task(model: Mapping[str, Any], optimizer: str, learning_rate: float, batch_size: int,
             early_stopping: Mapping[str, Any] | None = None) -> tuple[train.Task, dict[str, jax.Array]]:
    """A Task for `models.MLP(**model)` and the hparams it reads; raises ValueError on a bad setting, at once.

    `early_stopping` holds keras.callbacks.EarlyStopping's arguments (monitor, patience, ...), or None.
    """
    model = dict(model)
    hparams = {'learning_rate': learning_rate, **{k: model.pop(k) for k in SWEEPABLE if k in model}}
    # Build once with concrete numbers so that names and ranges are checked before any data is loaded.
    concrete = models.MLP(**model, **{k: v for k, v in hparams.items() if k != 'learning_rate'})
    jax.eval_shape(lambda: concrete.init(jax.random.PRNGKey(0), np.zeros((1, 784), np.float32), train=False))
    train.make_optimizer(optimizer, learning_rate)
    if batch_size < 1:
        raise ValueError(f'batch_size must be a positive integer, got {batch_size}')
    task = train.Task(
        make_model=lambda hp: models.MLP(**model, **{k: v for k, v in hp.items() if k != 'learning_rate'}),
        make_optimizer=lambda hp: train.make_optimizer(optimizer, hp['learning_rate']),
        batch_size=batch_size,
        early_stopping=early_stopping_lib.EarlyStopping(**early_stopping) if early_stopping else None)
    return task, train.as_hparams(hparams)


def device_data(splits: data_lib.Splits) -> tuple[train.Data, tuple[jax.Array, jax.Array]]:
    """The training and validation arrays as train.Data, and the test arrays, on the device."""
    train_images, train_labels = data_lib.to_device(splits.train_images, splits.train_labels)
    validation_images, validation_labels = data_lib.to_device(splits.validation_images, splits.validation_labels)
    return (train.Data(train_images, train_labels, validation_images, validation_labels),
            data_lib.to_device(splits.test_images, splits.test_labels))


def train_members(task: train.Task, seeds: Sequence[int], hparams: Sequence[Mapping[str, jax.Array]],
                  data: train.Data, test: tuple[jax.Array, jax.Array], *, epochs: int, label: str,
                  data_seed: int = 0, shuffle: str = 'shared', checkpoint_dir: str | None = None,
                  resume: bool = False, log: Callable[[str], None] = print) -> tuple[train.TrainState, dict]:
    """Trains member i from seeds[i] and hparams[i], all in one program; returns the state and the runs.

    A seed sets the weights and the dropout stream. The batch order comes from `data_seed`, shared by all members
    ('shared'), or from each member's seed ('per_member'). With `checkpoint_dir`, every epoch is saved there, and
    `resume` continues from the newest checkpoint with the same bits as an uninterrupted run. With more than one
    device (or host), every batch is split over all of them and the rest is replicated (data parallelism).
    Runs are {seed: {'history': rows, 'test': {'loss', 'accuracy'}}}.
    """
    if len(seeds) != len(hparams):
        raise ValueError(f'{len(seeds)} seeds but {len(hparams)} hparams')
    members = len(seeds) > 1
    init_keys = [jax.random.PRNGKey(seed) for seed in seeds]
    order_keys = [jax.random.fold_in(key, 1) for key in init_keys]
    input_shape = data.train_images.shape[1:]
    if members:
        state = train.init_members(task, hparams, train.stack(init_keys), input_shape)
    else:
        state = jax.jit(lambda hp, key: train.init_state(task, hp, key, input_shape))(hparams[0], init_keys[0])
    if shuffle == 'shared':
        data_key = jax.random.PRNGKey(data_seed)
    else:
        data_key = train.stack(order_keys) if members else order_keys[0]

    saver = checkpoint.Checkpointer(checkpoint_dir) if checkpoint_dir else None
    start_epoch, history = 0, []
    if saver is not None and saver.latest_epoch() is not None:
        if not resume:
            raise ValueError(f'{checkpoint_dir} already holds a checkpoint; pass --resume to continue it')
        state, metadata = saver.restore(state)
        start_epoch, history = metadata['epoch'], metadata['history']
        log(f'{label}: resumed after epoch {start_epoch}')

    constrain_batch = None
    if jax.device_count() > 1:
        mesh = parallel.data_mesh()
        parallel.check_batch_size(task.batch_size, mesh)
        state, data, test, data_key = parallel.replicate((state, data, test, data_key), mesh)
        # A per-member batch order gathers [members, batch, ...]; otherwise the batch axis leads.
        constrain_batch = parallel.batch_constraint(mesh, 1 if members and shuffle == 'per_member' else 0)

    def on_epoch_end(epoch, state, history):
        log(report.epoch_line(label, history[-1]))
        if saver is not None:
            saver.save(epoch, state, {'epoch': epoch, 'history': history})

    state, history = train.fit(task, state, data, epochs=epochs, data_key=data_key, members=members,
                               shuffle=shuffle, start_epoch=start_epoch, history=history,
                               on_epoch_end=on_epoch_end, constrain_batch=constrain_batch)
    if saver is not None:
        saver.close()
    test_metrics = train.evaluate_members(task, state, *test, members=members)
    runs = {}
    for index, seed in enumerate(seeds):
        pick = (lambda value: value[index]) if members else (lambda value: value)
        runs[seed] = {'history': report.member_history(history, index) if members else history,
                      'test': {name: pick(value) for name, value in test_metrics.items()}}
    return state, runs


def checkpoint_directory(workdir: str, variant: str) -> str:
    """Where a variant's checkpoints live inside a workdir."""
    return os.path.join(workdir, 'checkpoints', variant)
