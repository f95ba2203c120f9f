"""The training core: TrainState, Task, jitted train/eval steps, scanned epochs, vmapped sweeps and `fit`.

Entry points, from small to large: `train_step` (one update), `evaluate` (one evaluation pass), `run_epoch` (one
scanned epoch, pure) and `fit` (epochs, with hooks between them). `nets.runner.train_variant` puts checkpoints,
progress lines and per-member results around `fit`; `nets.tasks.build` makes a Task from a config.

One epoch is one compiled program: a `lax.scan` over shuffled batch indices into device-resident arrays, with the
validation pass fused in. A sweep of N runs of the same shapes (seeds, learning rates, dropout rates, ...) is the
same program with the step `vmap`ped over a leading "member" axis of the state. The members share the batch order,
so each batch is gathered once and every layer's matmuls of all members fuse into one larger GEMM.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nets import early_stopping as early_stopping_lib, losses, orders
from nets.registry import lookup

Hparams = Mapping[str, jax.Array]
SHUFFLES = ('shared', 'per_member')


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue: weights, batch-norm statistics, optimizer state, step, rng, hparams."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array  # dropout key of step t is fold_in(rng, t)
    hparams: Any  # float32 scalars that may differ between the members of a sweep
    early_stopping: Any = None  # EarlyStoppingState when the task stops early
    best: Any = None  # params and batch_stats of the best epoch, when the task restores them
    masks: Any = None  # a pytree mirroring params (1 keeps a weight, 0 removes it), read by an after-update hook
    pruning: Any = None  # what pruning must carry across epochs and checkpoints (nets.pruning: rewind point, ...)
    # True once the training loss turned non-finite; the run's weights then stay those from before that epoch.
    diverged: Any = None


@flax.struct.dataclass
class Data:
    """Device-resident training and validation arrays (validation may be empty; the labels may be None for a loss
    whose targets are the inputs)."""

    train_images: jax.Array
    train_labels: jax.Array
    validation_images: jax.Array
    validation_labels: jax.Array


@dataclasses.dataclass(frozen=True)
class Task:
    """The static half of a run: how to build the model and optimizer from (possibly traced) hyper-parameters,
    what to minimise and report, and what to do after every update.

    `make_model(hparams, architecture)` builds the model; `architecture` (from `architecture_of(params)`, e.g.
    {'hidden_widths': (64, 33)}) overrides the configured shapes, so that a state whose params changed shape
    (neurons added or removed) rebuilds the model that fits it. `penalty(params, intermediates, hparams)` is added
    to the loss; intermediates are what the model sowed, captured only when `reads_activations`.
    `after_update(state)` runs after every optimizer update inside the compiled step (masks, projections).
    With `early_stopping`, each run (each member of a sweep) stops on its own and its weights freeze.
    `order` is the order the training examples are presented in (nets.orders).
    """

    make_model: Callable[[Hparams, Mapping[str, Any] | None], nn.Module]
    make_optimizer: Callable[[Hparams], optax.GradientTransformation]
    batch_size: int
    loss: losses.Loss = losses.LOSSES['softmax_cross_entropy']
    penalty: Callable[[Any, Any, Hparams], jax.Array] | None = None
    reads_activations: bool = False
    early_stopping: early_stopping_lib.EarlyStopping | None = None
    after_update: Callable[[TrainState], TrainState] | None = None
    architecture_of: Callable[[Any], Mapping[str, Any]] = lambda params: {}
    order: orders.Order = orders.ORDERS['reshuffle']

    def model(self, hparams: Hparams, params: Any = None) -> nn.Module:
        """The model that fits `params`' shapes (the configured shapes when params is None)."""
        return self.make_model(hparams, None if params is None else self.architecture_of(params))


def as_hparams(values: Mapping[str, float]) -> dict[str, jax.Array]:
    """Hyper-parameters as float32 scalars, the form the state carries and a sweep stacks."""
    return {name: jnp.asarray(value, jnp.float32) for name, value in values.items()}


def stack(trees: Sequence[Any]) -> Any:
    """Stack pytrees of equal structure along a new leading member axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, index: int) -> Any:
    """The `index`-th member of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def map_like_params(function: Callable[[Any], Any], tree: Any, params: Any) -> Any:
    """Applies `function` to every subtree of `tree` that mirrors `params` (optimizer moments, say), found by
    structure rather than by position in a chain; everything else (step counts, empty states) is left alone."""
    structure = jax.tree.structure(params)
    mirrors = lambda node: node is not None and jax.tree.structure(node) == structure
    return jax.tree.map(lambda node: function(node) if mirrors(node) else node, tree, is_leaf=mirrors)


def init_state(
    task: Task,
    hparams: Hparams,
    key: jax.Array,
    input_shape: Sequence[int],
    architecture: Mapping[str, Any] | None = None,
) -> TrainState:
    """A fresh TrainState; `key` seeds the weights and, split off, the dropout stream.

    `architecture` overrides the configured shapes (the like-state of a grown or pruned checkpoint, say).
    """
    init_key, dropout_key = jax.random.split(key)
    model = task.make_model(hparams, architecture)
    variables = model.init({'params': init_key}, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    params, batch_stats = variables['params'], variables.get('batch_stats', {})
    rule = task.early_stopping
    return TrainState(
        params=params,
        batch_stats=batch_stats,
        opt_state=task.make_optimizer(hparams).init(params),
        step=jnp.zeros((), jnp.int32),
        rng=dropout_key,
        # A copy: fit() donates the state, which must not delete the caller's arrays.
        hparams={name: jnp.array(value) for name, value in hparams.items()},
        early_stopping=early_stopping_lib.init() if rule else None,
        # Copies, never aliases of params: fit() donates the state buffer by buffer.
        best=jax.tree.map(jnp.copy, {'params': params, 'batch_stats': batch_stats})
        if rule and rule.restore_best_weights
        else None,
        diverged=jnp.zeros((), bool),
    )


def init_members(
    task: Task,
    hparams: Sequence[Hparams],
    keys: jax.Array,
    input_shape: Sequence[int],
    architecture: Mapping[str, Any] | None = None,
) -> TrainState:
    """A stacked TrainState of len(hparams) members, member i from hparams[i] and keys[i]."""
    init = jax.vmap(lambda hp, key: init_state(task, hp, key, input_shape, architecture))
    return jax.jit(init)(stack(list(hparams)), keys)


def _apply(task: Task, state: TrainState, params, images, *, train: bool, rng=None):
    """Runs the model; in training returns the updated mutable collections too."""
    model = task.model(state.hparams, params)
    variables = {'params': params}
    if state.batch_stats:
        variables['batch_stats'] = state.batch_stats
    if not train:
        return model.apply(variables, images, train=False), {}
    mutable = [
        name
        for name, wanted in (('batch_stats', bool(state.batch_stats)), ('intermediates', task.reads_activations))
        if wanted
    ]
    return model.apply(variables, images, train=True, rngs={'dropout': rng}, mutable=mutable)


def train_step(task: Task, state: TrainState, images: jax.Array, labels: jax.Array):
    """One optimizer step on a batch, then the after-update hook; returns the new state and the batch's metrics."""
    targets = task.loss.target(images, labels)

    def objective(params):
        outputs, updated = _apply(
            task, state, params, images, train=True, rng=jax.random.fold_in(state.rng, state.step)
        )
        loss = task.loss.value(outputs, targets)
        total = loss
        if task.penalty is not None:
            total = total + task.penalty(params, updated.get('intermediates', {}), state.hparams)
        return total, (loss, outputs, updated)

    grads, (loss, outputs, updated) = jax.grad(objective, has_aux=True)(state.params)
    # `value` reaches the transforms that read the loss (reduce_on_plateau); the others ignore it.
    updates, opt_state = task.make_optimizer(state.hparams).update(grads, state.opt_state, state.params, value=loss)
    new_state = state.replace(
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        batch_stats=updated.get('batch_stats', state.batch_stats),
        step=state.step + 1,
    )
    if task.after_update is not None:
        new_state = task.after_update(new_state)
    return new_state, {'loss': loss, **task.loss.extra(outputs, targets)}


def evaluate(task: Task, state: TrainState, images: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """The task's metrics in evaluation mode: no dropout, running batch-norm statistics, nothing updated."""
    outputs, _ = _apply(task, state, state.params, images, train=False)
    return task.loss.metrics(outputs, task.loss.target(images, labels))


batch_order = orders.batch_order  # shuffled indices [steps, batch_size]: the default order


def example_losses(task: Task, state: TrainState, images: jax.Array, labels: jax.Array | None) -> jax.Array:
    """The loss of every example under the current weights, in evaluation mode, read a batch at a time."""
    model = task.model(state.hparams, state.params)
    variables = {'params': state.params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}

    def one(example):
        image, label = example
        image, label = image[None], None if label is None else label[None]
        outputs = model.apply(variables, image, train=False)
        return task.loss.value(outputs, task.loss.target(image, label))

    return jax.lax.map(one, (images, labels), batch_size=task.batch_size)


def epoch_keys(data_key: jax.Array, epoch: int | jax.Array) -> jax.Array:
    """The key that orders epoch `epoch`; a stacked data_key gives one key per member."""
    if data_key.ndim == 2:
        return jax.vmap(jax.random.fold_in, in_axes=(0, None))(data_key, epoch)
    return jax.random.fold_in(data_key, epoch)


def run_epoch(
    task: Task,
    state: TrainState,
    data: Data,
    order_key: jax.Array,
    *,
    members: bool = False,
    shuffle: str = 'shared',
    constrain_batch: Callable[[jax.Array], jax.Array] = lambda x: x,
):
    """One epoch as a single scan of train steps, then the validation pass; pure, so jit it or vmap it.

    With `members`, the state is stacked and the step is vmapped: 'shared' shuffling gathers each batch once for
    all members (order_key is one key), 'per_member' gathers a batch per member (order_key is stacked). The task's
    order (nets.orders) makes the epoch's batches; one that reads the per-example losses orders each member by its
    own, so each gets its own batches. `constrain_batch` lets data parallelism pin each batch's sharding.
    """
    lookup(dict.fromkeys(SHUFFLES), shuffle, 'shuffle')
    num_train = data.train_images.shape[0]
    step = lambda s, x, y: train_step(task, s, x, y)
    check = lambda s, x, y: evaluate(task, s, x, y)
    rule = task.order
    order_of = lambda key, losses: rule.indices(key, num_train, data.train_labels, losses, task.batch_size)
    losses_of = lambda s: example_losses(task, s, data.train_images, data.train_labels)
    if members and (shuffle == 'per_member' or rule.reads_losses):
        # A batch per member: its own order key, or an order that reads its own losses.
        losses = jax.vmap(losses_of)(state) if rule.reads_losses else None
        key_axis = 0 if shuffle == 'per_member' else None
        order = jax.vmap(order_of, in_axes=(key_axis, None if losses is None else 0))(order_key, losses)
        order = jnp.swapaxes(order, 0, 1)  # [steps, members, batch]
        step = jax.vmap(step)
    else:
        order = order_of(order_key, losses_of(state) if rule.reads_losses else None)
        if members:
            step = jax.vmap(step, in_axes=(0, None, None))
    if members:
        check = jax.vmap(check, in_axes=(0, None, None))

    def body(state, indices):
        labels = None if data.train_labels is None else constrain_batch(data.train_labels[indices])
        return step(state, constrain_batch(data.train_images[indices]), labels)

    start = state
    state, metrics = jax.lax.scan(body, state, order)
    summary = {f'train_{name}': value.mean(0) for name, value in metrics.items()}
    if data.validation_images.shape[0]:
        validation = check(state, data.validation_images, data.validation_labels)
        summary |= {f'val_{name}': value for name, value in validation.items()}
    state, summary = _freeze_diverged(start, state, summary)
    if task.early_stopping is not None:
        state, summary = _stop_early(task.early_stopping, start, state, summary, members)
    return state, summary


def _freeze_diverged(start: TrainState, state: TrainState, summary: dict) -> tuple[TrainState, dict]:
    """Marks the runs whose training loss turned non-finite this epoch and keeps, from then on, their weights of
    before it: a diverged member of a sweep stops changing (its later rows are NaN) while the others go on."""
    if start.diverged is None or 'train_loss' not in summary:
        return state, summary
    diverged = start.diverged | ~jnp.isfinite(summary['train_loss'])
    state = where_members(diverged, start, state).replace(diverged=diverged)
    # The epoch it diverged in keeps its non-finite loss, so the history shows where; later epochs are NaN.
    summary = {name: jnp.where(start.diverged, jnp.nan, value) for name, value in summary.items()}
    return state, summary | {'diverged': diverged}


def where_members(mask: jax.Array, if_true: Any, if_false: Any) -> Any:
    """Per-member select between two stacked pytrees (mask [members]) or two plain ones (scalar mask)."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree.map(pick, if_true, if_false)


def _stop_early(rule, start: TrainState, state: TrainState, summary: dict, members: bool):
    """Freezes runs that had stopped before this epoch, then takes this epoch's early-stopping decision."""
    if rule.monitor not in summary:
        raise ValueError(
            f'early stopping monitors {rule.monitor!r}, which this run does not measure '
            '(val_* needs a validation split)'
        )
    active = ~start.early_stopping.stopped
    # A stopped run trained this epoch inside the vmapped program too; keep its weights from before.
    state = where_members(active, state, start)
    summary = {
        name: value if name == 'diverged' else jnp.where(active, value, jnp.nan) for name, value in summary.items()
    }
    update = lambda es, value: early_stopping_lib.update(rule, es, value)
    decided, improved = (jax.vmap(update) if members else update)(state.early_stopping, summary[rule.monitor])
    state = state.replace(early_stopping=decided)
    if rule.restore_best_weights:
        state = state.replace(
            best=where_members(improved, {'params': state.params, 'batch_stats': state.batch_stats}, state.best)
        )
    return state, summary | {'stopped': decided.stopped}


def _signature(tree: Any) -> tuple:
    """What a compiled epoch program is specialised to: structure, shapes, dtypes and placement of the state."""
    leaves, structure = jax.tree.flatten(tree)
    return structure, tuple(
        (np.shape(leaf), getattr(leaf, 'dtype', type(leaf)), getattr(leaf, 'sharding', None)) for leaf in leaves
    )


def _to_python(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def fit(
    task: Task,
    state: TrainState,
    data: Data,
    *,
    epochs: int,
    data_key: jax.Array,
    members: bool = False,
    shuffle: str = 'shared',
    start_epoch: int = 0,
    history: Iterable[dict] = (),
    on_epoch_end: Callable[[int, TrainState, list[dict]], TrainState | None] | None = None,
    constrain_batch: Callable[[jax.Array], jax.Array] | None = None,
) -> tuple[TrainState, list[dict]]:
    """Trains from `start_epoch` to `epochs`; returns the final state and the per-epoch history.

    Each history row has epoch, the task's train_* and val_* metrics (lists over members for a sweep), `seconds` (the
    epoch's wall time, compile excluded) and `compile_seconds` (non-zero where the epoch program was compiled).
    `on_epoch_end(epoch, state, history)` runs between epochs (checkpoints, logging, growth, pruning); if it returns
    a state, training continues from that one, recompiling once if its shapes changed.
    """
    kwargs = {'members': members, 'shuffle': shuffle}
    if constrain_batch is not None:
        kwargs['constrain_batch'] = constrain_batch
    epoch_program = jax.jit(lambda s, d, k: run_epoch(task, s, d, k, **kwargs), donate_argnums=0)
    history = list(history)
    compiled, compiled_for = None, None
    for epoch in range(start_epoch, epochs):
        order_key = epoch_keys(data_key, 0 if task.order.same_every_epoch else epoch)
        compile_seconds = 0.0
        if compiled_for != _signature(state):
            started = time.perf_counter()
            compiled = epoch_program.lower(state, data, order_key).compile()
            compile_seconds = time.perf_counter() - started
            compiled_for = _signature(state)
        started = time.perf_counter()
        state, metrics = compiled(state, data, order_key)
        metrics = jax.device_get(metrics)
        seconds = time.perf_counter() - started
        history.append(
            {
                'epoch': epoch + 1,
                **{k: _to_python(v) for k, v in metrics.items()},
                'seconds': seconds,
                'compile_seconds': compile_seconds,
            }
        )
        if on_epoch_end is not None:
            state = on_epoch_end(epoch + 1, state, history) or state
        if np.all(finished(metrics)):
            break
    if task.early_stopping is not None and task.early_stopping.restore_best_weights:
        state = jax.jit(restore_best)(state)
    return state, history


def finished(row: Mapping[str, Any]) -> np.ndarray:
    """Which runs (members) of a history row have ended: stopped early or diverged."""
    return np.asarray(row.get('stopped', False)) | np.asarray(row.get('diverged', False))


def restore_best(state: TrainState) -> TrainState:
    """Keras's restore_best_weights at the end of training: each run's params and batch_stats of its best epoch."""
    best = where_members(
        state.early_stopping.has_best, state.best, {'params': state.params, 'batch_stats': state.batch_stats}
    )
    return state.replace(params=best['params'], batch_stats=best['batch_stats'])


def evaluator(task: Task, members: bool = False) -> Callable[[TrainState, jax.Array, jax.Array], dict[str, Any]]:
    """A compiled `evaluate` (vmapped over a stacked state's members) that returns Python numbers (lists over
    members); build it once to evaluate after every epoch without recompiling."""
    check = lambda s, x, y: evaluate(task, s, x, y)
    program = jax.jit(jax.vmap(check, in_axes=(0, None, None)) if members else check)
    return lambda state, images, labels: {
        k: _to_python(v) for k, v in jax.device_get(program(state, images, labels)).items()
    }


def evaluate_members(
    task: Task, state: TrainState, images: jax.Array, labels: jax.Array, members: bool = False
) -> dict[str, Any]:
    """The task's evaluation-mode metrics as Python numbers (lists over members for a stacked state)."""
    return evaluator(task, members)(state, images, labels)
