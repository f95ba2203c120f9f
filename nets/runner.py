"""What every experiment does with the core: put data on the device, and train a variant's members (seeds and
swept hyper-parameters) as one vmapped program, with the caller's hook, a checkpoint, a progress line and
TensorBoard rows after every epoch, and results keyed by member.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from nets import checkpoint, data as data_lib, parallel, report, tasks, train

EpochHook = Callable[[int, train.TrainState, list[dict]], 'train.TrainState | None']


def device_data(splits: data_lib.Splits) -> tuple[train.Data, tuple[jax.Array, jax.Array]]:
    """The training and validation arrays as train.Data, and the test arrays, on the device."""
    train_images, train_labels = data_lib.to_device(splits.train_images, splits.train_labels)
    validation_images, validation_labels = data_lib.to_device(splits.validation_images, splits.validation_labels)
    return (
        train.Data(train_images, train_labels, validation_images, validation_labels),
        data_lib.to_device(splits.test_images, splits.test_labels),
    )


def grid(seeds: Sequence[int], sweep: Mapping[str, Sequence[float]] | None = None) -> list[dict[str, Any]]:
    """Every combination of a seed and one value of each swept hyper-parameter, as member dicts
    {'seed': s, 'optimizer.learning_rate': v, ...}; seeds vary fastest."""
    sweep = dict(sweep or {})
    members = []
    for values in itertools.product(*sweep.values()):
        members += [{'seed': int(seed), **dict(zip(sweep, values))} for seed in seeds]
    return members


def member_label(member: Mapping[str, Any]) -> str:
    """'seed=0' or 'seed=0,optimizer.learning_rate=0.01': the member's seed and every value it sets."""
    return ','.join(
        f'{name}={value:g}' if isinstance(value, float) else f'{name}={value}' for name, value in member.items()
    )


def train_variant(
    task: train.Task,
    hparams: Mapping[str, jax.Array],
    members: Sequence[Mapping[str, Any]],
    data: train.Data,
    test: tuple[jax.Array, jax.Array] | None,
    *,
    epochs: int,
    name: str,
    data_seed: int = 0,
    shuffle: str = 'shared',
    checkpoint_dir: str | None = None,
    resume: bool = False,
    on_epoch_end: EpochHook | None = None,
    prepare_state: Callable[[train.TrainState], train.TrainState] | None = None,
    tensorboard_dir: str | None = None,
    checkpoint_every: int = 1,
    log: Callable[[str], None] = report.log,
) -> tuple[train.TrainState, dict[str, dict]]:
    """Trains every member of a variant in one program; returns the final state and the runs by member label.

    A member is {'seed': s, PATH: value, ...} (see `grid`): the seed sets the weights and the dropout stream, the
    other entries override the task's hyper-parameters `hparams`. The batch order comes from `data_seed`, shared
    by all members ('shared'), or from each member's seed ('per_member'). After every epoch, in this order:
    `on_epoch_end(epoch, state, history)` (which may return a changed state, of other shapes too), the checkpoint
    (every `checkpoint_every` epochs, at the last and when every member has stopped; with the architecture, so that
    `resume` restores a grown or pruned state bit for bit), the progress line and
    the TensorBoard rows. `prepare_state(state)` turns the freshly initialised state into the one training starts
    from (masks, a pruning state, weights of an earlier variant); it also shapes the state that a resume restores.
    With more than one device (or host), every batch is split over all of them.
    Runs are {label: {'seed', 'hparams' (the member's overrides), 'history', 'test' (metrics, or absent)}}.
    """
    if not members:
        raise ValueError(f'{name}: no members to train; give at least one seed')
    labels = [member_label(member) for member in members]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f'{name}: members {", ".join(duplicates)} appear twice; each seed and value once')
    member_hparams = [tasks.member_hparams(hparams, {k: v for k, v in m.items() if k != 'seed'}) for m in members]
    stacked = len(members) > 1
    init_keys = [jax.random.PRNGKey(member['seed']) for member in members]
    input_shape = data.train_images.shape[1:]

    def initial_state(architecture=None):
        if stacked:
            state = train.init_members(task, member_hparams, train.stack(init_keys), input_shape, architecture)
        else:
            state = jax.jit(lambda hp, key: train.init_state(task, hp, key, input_shape, architecture))(
                member_hparams[0], init_keys[0]
            )
        return state if prepare_state is None else prepare_state(state)

    if shuffle == 'shared':
        data_key = jax.random.PRNGKey(data_seed)
    else:
        order_keys = [jax.random.fold_in(key, 1) for key in init_keys]
        data_key = train.stack(order_keys) if stacked else order_keys[0]

    saver = checkpoint.Checkpointer(checkpoint_dir) if checkpoint_dir else None
    start_epoch, history = 0, []
    if saver is not None and saver.latest_epoch() is not None:
        if not resume:
            raise ValueError(f'{checkpoint_dir} already holds a checkpoint; pass --resume to continue it')
        metadata = saver.metadata()
        # The like-state takes the checkpoint's shapes, which growth or pruning may have changed.
        state, metadata = saver.restore(initial_state(metadata.get('architecture')))
        start_epoch, history = metadata['epoch'], metadata['history']
        log(f'{name}: resumed after epoch {start_epoch}')
    else:
        state = initial_state()

    constrain_batch = None
    if jax.device_count() > 1:
        mesh = parallel.data_mesh()
        parallel.check_batch_size(task.batch_size, mesh)
        state, data, test, data_key = parallel.replicate((state, data, test, data_key), mesh)
        # A per-member batch order gathers [members, batch, ...]; otherwise the batch axis leads.
        constrain_batch = parallel.batch_constraint(mesh, 1 if stacked and shuffle == 'per_member' else 0)

    board = report.TensorBoard(tensorboard_dir, name, labels) if tensorboard_dir else None

    def after_epoch(epoch, state, history):
        if on_epoch_end is not None:
            state = on_epoch_end(epoch, state, history) or state
        stopped = bool(np.all(history[-1].get('stopped', False)))  # every member has stopped early
        if saver is not None and (epoch % checkpoint_every == 0 or epoch == epochs or stopped):
            saver.save(
                epoch,
                state,
                {'epoch': epoch, 'history': history, 'architecture': dict(task.architecture_of(state.params))},
            )
        log(report.epoch_line(name, history[-1]))
        if board is not None:
            board.write(history[-1])
        return state

    state, history = train.fit(
        task,
        state,
        data,
        epochs=epochs,
        data_key=data_key,
        members=stacked,
        shuffle=shuffle,
        start_epoch=start_epoch,
        history=history,
        on_epoch_end=after_epoch,
        constrain_batch=constrain_batch,
    )
    if saver is not None:
        saver.close()
    if board is not None:
        board.close()
    test_metrics = train.evaluate_members(task, state, *test, members=stacked) if test is not None else {}
    runs = {}
    for index, (label, member) in enumerate(zip(labels, members)):
        runs[label] = {
            'seed': member['seed'],
            'hparams': {k: v for k, v in member.items() if k != 'seed'},
            'history': report.member_history(history, index) if stacked else history,
        }
        if test is not None:
            runs[label]['test'] = {metric: value[index] if stacked else value for metric, value in test_metrics.items()}
    return state, runs


def checkpoint_directory(workdir: str, variant: str) -> str:
    """Where a variant's checkpoints live inside a workdir."""
    return os.path.join(workdir, 'checkpoints', variant)


def tensorboard_directory(workdir: str) -> str:
    """Where the TensorBoard event files of a workdir live (one run folder per variant and member)."""
    return os.path.join(workdir, 'tensorboard')


def input_shape(dataset: str) -> tuple[int, ...]:
    """The shape of one example of `dataset` as the model sees it (flattened pixels in [0, 1])."""
    return (int(np.prod(data_lib.image_shape(dataset))),)


def run_variant(
    workdir: str,
    config: Any,
    name: str,
    task: train.Task,
    hparams: Mapping[str, jax.Array],
    members: Sequence[Mapping[str, Any]],
    data: train.Data,
    test: tuple[jax.Array, jax.Array] | None,
    *,
    resume: bool = False,
    on_epoch_end: EpochHook | None = None,
    prepare_state: Callable[[train.TrainState], train.TrainState] | None = None,
    epochs: int | None = None,
) -> tuple[train.TrainState, dict]:
    """`train_variant` as an experiment runs it: epochs (unless given), data_seed, shuffle and checkpoint_every
    (default 1) from the config, checkpoints and TensorBoard rows in the workdir."""
    return train_variant(
        task,
        hparams,
        members,
        data,
        test,
        epochs=config.epochs if epochs is None else epochs,
        checkpoint_every=config.get('checkpoint_every', 1),
        name=name,
        data_seed=config.get('data_seed', 0),
        shuffle=config.get('shuffle', 'shared'),
        checkpoint_dir=checkpoint_directory(workdir, name),
        tensorboard_dir=tensorboard_directory(workdir),
        resume=resume,
        on_epoch_end=on_epoch_end,
        prepare_state=prepare_state,
    )
