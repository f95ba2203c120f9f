"""What every experiment does with the core: put data on the device, and train a variant's members (seeds and
swept hyper-parameters) as one vmapped program, with the caller's hook, a checkpoint, a progress line and
TensorBoard rows after every epoch, and results keyed by member.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nets import checkpoint, data as data_lib, parallel, report, results, tasks, train

EpochHook = Callable[[int, train.TrainState, list[dict]], 'train.TrainState | None']
WRITER_CLOSE_SECONDS = 10.0  # the longest wait for the TensorBoard writers as a variant ends or stops


class Interrupted(Exception):
    """A stop that `request_stop` asked for, raised at the end of the epoch that was training, once that epoch's
    checkpoint is saved: --resume continues from it."""


class _StopRequest:
    """Set by a signal handler (launch.py), read at the next epoch end: the one safe point, since a signal that
    raised wherever it landed could leave a writer's queue or a checkpoint half done."""

    signal: int | None = None


def request_stop(signal_number: int) -> None:
    """Asks every variant that trains to stop at the end of its current epoch (see Interrupted)."""
    _StopRequest.signal = signal_number


def stop_requested() -> int | None:
    """The signal that asked for a stop, if one did."""
    return _StopRequest.signal


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


def initial_state(
    task: train.Task,
    hparams: Mapping[str, jax.Array],
    members: Sequence[Mapping[str, Any]],
    input_shape: Sequence[int],
    architecture: Mapping[str, Any] | None = None,
) -> train.TrainState:
    """The state a variant's members start from (see `grid`), stacked on a leading member axis, also for one member.
    `architecture` overrides the configured shapes (the like-state of a grown or pruned checkpoint)."""
    member_hparams = [tasks.member_hparams(hparams, {k: v for k, v in m.items() if k != 'seed'}) for m in members]
    keys = train.stack([jax.random.PRNGKey(member['seed']) for member in members])
    return train.init_members(task, member_hparams, keys, input_shape, architecture)


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
    from (masks, a pruning state, pretrained weights); it also shapes the like-state that a resume restores into.
    With more than one device (or host), every batch is split over all of them.
    Runs are {label: {'seed', 'hparams' (the member's overrides), 'history', 'test' (metrics, or absent)}}.
    """
    if not members:
        raise ValueError(f'{name}: no members to train; give at least one seed')
    labels = [member_label(member) for member in members]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f'{name}: members {", ".join(duplicates)} appear twice; each seed and value once')
    if data.train_images.shape[0] < task.batch_size:
        raise ValueError(
            f'{name}: batch_size {task.batch_size} is larger than the {data.train_images.shape[0]} training examples, '
            'so an epoch would train no step; use a batch of at most that'
        )
    init_keys = [jax.random.PRNGKey(member['seed']) for member in members]
    input_shape = data.train_images.shape[1:]

    if shuffle == 'shared':
        data_key = jax.random.PRNGKey(data_seed)
    else:
        order_keys = [jax.random.fold_in(key, 1) for key in init_keys]
        data_key = train.stack(order_keys)

    def start(architecture=None):
        state = initial_state(task, hparams, members, input_shape, architecture)
        return state if prepare_state is None else prepare_state(state)

    rule = task.early_stopping
    # Besides the newest checkpoints, keep the best epoch's by what early stopping monitors.
    best = None if rule is None else (rule.monitor, 'max' if rule.maximize else 'min')
    saver = checkpoint.Checkpointer(checkpoint_dir, best=best) if checkpoint_dir else None
    start_epoch, history, started_from = 0, [], None
    if saver is not None and saver.latest_epoch() is not None:
        if not resume:
            raise ValueError(f'{checkpoint_dir} already holds a checkpoint; pass --resume to continue it')
        # The state this variant starts from now (an earlier stage's weights and the config shape it): checkpoints
        # trained from another start are not continued.
        fresh = start()
        started_from = checkpoint.digest(fresh)

        def like(metadata):
            # The like-state takes the checkpoint's shapes, which growth or pruning may have changed, and its masks.
            shaped = start(metadata.get('architecture'))
            if metadata.get('masked') and shaped.masks is None:
                shaped = shaped.replace(masks=jax.tree.map(lambda leaf: jnp.ones(leaf.shape, bool), shaped.params))
            return shaped

        # A damaged newest checkpoint falls back to the one before, with a line that says so.
        state, metadata = saver.restore_newest_good(like, log)
        if metadata.get('variant', name) != name:
            raise ValueError(
                f'{checkpoint_dir}: holds a checkpoint of variant {metadata["variant"]!r}, not of {name!r}; it was '
                'copied or moved there, so it is not resumed: remove it, or start a fresh --workdir'
            )
        if metadata.get('started_from', started_from) == started_from:
            start_epoch, history = metadata['epoch'], metadata['history']
            log(f'{name}: resumed after epoch {start_epoch}')
        else:
            changed = 'an earlier stage trained on, or the config changed it'
            log(f'{name}: its start changed since its checkpoints were saved ({changed}), so it trains again from it')
            saver.close()
            checkpoint.remove(checkpoint_dir)
            saver = checkpoint.Checkpointer(checkpoint_dir, best=best)
            state = fresh
    else:
        state = start()
        started_from = None if saver is None else checkpoint.digest(state)

    constrain_batch = None
    if jax.device_count() > 1:
        mesh = parallel.data_mesh()
        parallel.check_batch_size(task.batch_size, mesh)
        state, data, test, data_key = parallel.replicate((state, data, test, data_key), mesh)
        # A per-member batch order gathers [members, batch, ...]; otherwise the batch axis leads.
        constrain_batch = parallel.batch_constraint(mesh, 1 if shuffle == 'per_member' else 0)

    board = report.TensorBoard(tensorboard_dir, name, labels) if tensorboard_dir else None

    def after_epoch(epoch, state, history):
        if on_epoch_end is not None:
            state = on_epoch_end(epoch, state, history) or state
        stopped = bool(np.all(train.finished(history[-1])))  # every member has stopped early or diverged
        interrupted = stop_requested() is not None
        if saver is not None and (epoch % checkpoint_every == 0 or epoch == epochs or stopped or interrupted):
            saver.save(
                epoch,
                state,
                {
                    'variant': name,
                    'started_from': started_from,  # the digest of the state the variant started from
                    'epoch': epoch,
                    'history': history,
                    'architecture': dict(task.architecture_of(state.params)),
                    'masked': state.masks is not None,  # masks mirroring params (pruning, growth's spare units)
                },
            )
        log(report.epoch_line(name, history[-1]))
        if board is not None:
            board.write(history[-1])
        if interrupted:
            raise Interrupted(f'{name} after epoch {epoch}')
        return state

    try:
        state, history = train.fit(
            task,
            state,
            data,
            epochs=epochs,
            data_key=data_key,
            members=True,
            shuffle=shuffle,
            start_epoch=start_epoch,
            history=history,
            on_epoch_end=after_epoch,
            constrain_batch=constrain_batch,
        )
    finally:  # also when training stops by an exception: no writer is left open for exit to wait on
        if saver is not None:
            saver.close()
        if board is not None:
            board.close(WRITER_CLOSE_SECONDS)
    test_metrics = train.evaluate_members(task, state, *test, members=True) if test is not None else {}
    runs = {}
    for index, (label, member) in enumerate(zip(labels, members)):
        runs[label] = {
            'seed': member['seed'],
            'hparams': {k: v for k, v in member.items() if k != 'seed'},
            'history': results.member_history(history, index),
        }
        if test is not None:
            runs[label]['test'] = results.member_entries(test_metrics, index)
        diverged_at = diverged_epoch(runs[label]['history'])
        if diverged_at is not None:
            runs[label]['diverged_epoch'] = diverged_at
            log(f'{name}: {label} diverged (non-finite training loss) in epoch {diverged_at}; its weights are those '
                'of the epoch before')  # fmt: skip
    return state, runs


def diverged_epoch(history: Sequence[Mapping[str, Any]]) -> int | None:
    """The epoch in which one member's training loss turned non-finite, or None."""
    return next((row['epoch'] for row in history if row.get('diverged')), None)


def chain(*hooks: EpochHook | None) -> EpochHook:
    """One epoch hook that runs `hooks` in order, each on the state the one before returned."""

    def hook(epoch: int, state: train.TrainState, history: list[dict]) -> train.TrainState:
        for each in hooks:
            if each is not None:
                state = each(epoch, state, history) or state
        return state

    return hook


def evaluation_hook(
    task: train.Task, images: jax.Array, labels: jax.Array, *, members: bool = False, prefix: str = 'test_'
) -> EpochHook:
    """An epoch hook that adds the task's evaluation metrics on (images, labels) to the history row as
    `<prefix><metric>` (per member for a sweep): curves against a held-out set that chooses nothing."""
    evaluate = train.evaluator(task, members)

    def hook(epoch: int, state: train.TrainState, history: list[dict]) -> None:
        history[-1].update({f'{prefix}{name}': value for name, value in evaluate(state, images, labels).items()})

    return hook


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
