"""The training core: TrainState, loss, jitted train/eval steps, scanned epochs, vmapped sweeps and `fit`.

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

from nets import early_stopping as early_stopping_lib

Hparams = Mapping[str, jax.Array]
OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'rmsprop', 'adam')
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


@flax.struct.dataclass
class Data:
    """Device-resident training and validation arrays (validation may be empty)."""
    train_images: jax.Array
    train_labels: jax.Array
    validation_images: jax.Array
    validation_labels: jax.Array


@dataclasses.dataclass(frozen=True)
class Task:
    """The static half of a run: how to build the model and optimizer from (possibly traced) hyper-parameters.

    `penalty(params, intermediates, hparams)` is added to the loss; intermediates are what the model sowed.
    With `early_stopping`, each run (each member of a sweep) stops on its own and its weights freeze.
    """
    make_model: Callable[[Hparams], nn.Module]
    make_optimizer: Callable[[Hparams], optax.GradientTransformation]
    batch_size: int
    penalty: Callable[[Any, Any, Hparams], jax.Array] | None = None
    early_stopping: early_stopping_lib.EarlyStopping | None = None


def make_optimizer(name: str, learning_rate, momentum: float = 0.9) -> optax.GradientTransformation:
    """Optimizer by name with Keras's defaults (RMSprop rho 0.9, Adam/RMSprop epsilon 1e-7)."""
    if name == 'sgd':
        return optax.sgd(learning_rate)
    if name in ('momentum', 'nesterov'):
        return optax.sgd(learning_rate, momentum=momentum, nesterov=name == 'nesterov')
    if name == 'rmsprop':
        return optax.rmsprop(learning_rate, decay=0.9, eps=1e-7)
    if name == 'adam':
        return optax.adam(learning_rate, eps=1e-7)
    raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def as_hparams(values: Mapping[str, float]) -> dict[str, jax.Array]:
    """Hyper-parameters as float32 scalars, the form the state carries and a sweep stacks."""
    return {name: jnp.asarray(value, jnp.float32) for name, value in values.items()}


def stack(trees: Sequence[Any]) -> Any:
    """Stack pytrees of equal structure along a new leading member axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, index: int) -> Any:
    """The `index`-th member of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose largest logit is the label."""
    return (jnp.argmax(logits, -1) == labels).mean()


def init_state(task: Task, hparams: Hparams, key: jax.Array, input_shape: Sequence[int]) -> TrainState:
    """A fresh TrainState; `key` seeds the weights and, split off, the dropout stream."""
    init_key, dropout_key = jax.random.split(key)
    model = task.make_model(hparams)
    variables = model.init({'params': init_key}, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    params, batch_stats = variables['params'], variables.get('batch_stats', {})
    rule = task.early_stopping
    return TrainState(params=params, batch_stats=batch_stats,
                      opt_state=task.make_optimizer(hparams).init(params), step=jnp.zeros((), jnp.int32),
                      rng=dropout_key,
                      # A copy: fit() donates the state, which must not delete the caller's arrays.
                      hparams={name: jnp.array(value) for name, value in hparams.items()},
                      early_stopping=early_stopping_lib.init() if rule else None,
                      # Copies, never aliases of params: fit() donates the state buffer by buffer.
                      best=jax.tree.map(jnp.copy, {'params': params, 'batch_stats': batch_stats})
                      if rule and rule.restore_best_weights else None)


def init_members(task: Task, hparams: Sequence[Hparams], keys: jax.Array, input_shape: Sequence[int]) -> TrainState:
    """A stacked TrainState of len(hparams) members, member i from hparams[i] and keys[i]."""
    init = jax.vmap(lambda hp, key: init_state(task, hp, key, input_shape))
    return jax.jit(init)(stack(list(hparams)), keys)


def _apply(task: Task, state: TrainState, params, images, *, train: bool, rng=None):
    """Runs the model; in training returns the updated mutable collections too."""
    model = task.make_model(state.hparams)
    variables = {'params': params}
    if state.batch_stats:
        variables['batch_stats'] = state.batch_stats
    if not train:
        return model.apply(variables, images, train=False), {}
    mutable = [name for name, wanted in (('batch_stats', bool(state.batch_stats)),
                                         ('intermediates', task.penalty is not None)) if wanted]
    return model.apply(variables, images, train=True, rngs={'dropout': rng}, mutable=mutable)


def train_step(task: Task, state: TrainState, images: jax.Array, labels: jax.Array):
    """One optimizer step on a batch; returns the new state and the batch's loss and accuracy."""
    def objective(params):
        logits, updated = _apply(task, state, params, images, train=True,
                                 rng=jax.random.fold_in(state.rng, state.step))
        loss = cross_entropy(logits, labels)
        total = loss
        if task.penalty is not None:
            total = total + task.penalty(params, updated.get('intermediates', {}), state.hparams)
        return total, (loss, logits, updated)

    grads, (loss, logits, updated) = jax.grad(objective, has_aux=True)(state.params)
    updates, opt_state = task.make_optimizer(state.hparams).update(grads, state.opt_state, state.params)
    new_state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                              batch_stats=updated.get('batch_stats', state.batch_stats), step=state.step + 1)
    return new_state, {'loss': loss, 'accuracy': accuracy(logits, labels)}


def evaluate(task: Task, state: TrainState, images: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Loss and accuracy in evaluation mode: no dropout, running batch-norm statistics, nothing updated."""
    logits, _ = _apply(task, state, state.params, images, train=False)
    return {'loss': cross_entropy(logits, labels), 'accuracy': accuracy(logits, labels)}


def batch_order(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Shuffled example indices as [steps, batch_size]; the last partial batch is dropped."""
    steps = num_examples // batch_size
    return jax.random.permutation(key, num_examples)[:steps * batch_size].reshape(steps, batch_size)


def epoch_keys(data_key: jax.Array, epoch: int | jax.Array) -> jax.Array:
    """The key that orders epoch `epoch`; a stacked data_key gives one key per member."""
    if data_key.ndim == 2:
        return jax.vmap(jax.random.fold_in, in_axes=(0, None))(data_key, epoch)
    return jax.random.fold_in(data_key, epoch)


def run_epoch(task: Task, state: TrainState, data: Data, order_key: jax.Array, *, members: bool = False,
              shuffle: str = 'shared', constrain_batch: Callable[[jax.Array], jax.Array] = lambda x: x):
    """One epoch as a single scan of train steps, then the validation pass; pure, so jit it or vmap it.

    With `members`, the state is stacked and the step is vmapped: 'shared' shuffling gathers each batch once for
    all members (order_key is one key), 'per_member' gathers a batch per member (order_key is stacked).
    `constrain_batch` lets data parallelism pin each batch's sharding.
    """
    if shuffle not in SHUFFLES:
        raise ValueError(f"unknown shuffle {shuffle!r}; allowed: {', '.join(SHUFFLES)}")
    num_train = data.train_images.shape[0]
    step = lambda s, x, y: train_step(task, s, x, y)
    check = lambda s, x, y: evaluate(task, s, x, y)
    if members and shuffle == 'per_member':
        order = jax.vmap(batch_order, in_axes=(0, None, None))(order_key, num_train, task.batch_size)
        order = jnp.swapaxes(order, 0, 1)  # [steps, members, batch]
        step = jax.vmap(step)
    else:
        order = batch_order(order_key, num_train, task.batch_size)
        if members:
            step = jax.vmap(step, in_axes=(0, None, None))
    if members:
        check = jax.vmap(check, in_axes=(0, None, None))

    def body(state, indices):
        return step(state, constrain_batch(data.train_images[indices]), constrain_batch(data.train_labels[indices]))

    start = state
    state, metrics = jax.lax.scan(body, state, order)
    summary = {'train_loss': metrics['loss'].mean(0), 'train_accuracy': metrics['accuracy'].mean(0)}
    if data.validation_images.shape[0]:
        validation = check(state, data.validation_images, data.validation_labels)
        summary |= {'val_loss': validation['loss'], 'val_accuracy': validation['accuracy']}
    if task.early_stopping is not None:
        state, summary = _stop_early(task.early_stopping, start, state, summary, members)
    return state, summary


def where_members(mask: jax.Array, if_true: Any, if_false: Any) -> Any:
    """Per-member select between two stacked pytrees (mask [members]) or two plain ones (scalar mask)."""
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)
    return jax.tree.map(pick, if_true, if_false)


def _stop_early(rule, start: TrainState, state: TrainState, summary: dict, members: bool):
    """Freezes runs that had stopped before this epoch, then takes this epoch's early-stopping decision."""
    if rule.monitor not in summary:
        raise ValueError(f'early stopping monitors {rule.monitor!r}, which this run does not measure '
                         '(val_* needs a validation split)')
    active = ~start.early_stopping.stopped
    # A stopped run trained this epoch inside the vmapped program too; keep its weights from before.
    state = where_members(active, state, start)
    summary = {name: jnp.where(active, value, jnp.nan) for name, value in summary.items()}
    update = lambda es, value: early_stopping_lib.update(rule, es, value)
    decided, improved = (jax.vmap(update) if members else update)(state.early_stopping,
                                                                 summary[rule.monitor])
    state = state.replace(early_stopping=decided)
    if rule.restore_best_weights:
        state = state.replace(best=where_members(improved, {'params': state.params,
                                                            'batch_stats': state.batch_stats}, state.best))
    return state, summary | {'stopped': decided.stopped}


def train_run(task: Task, hparams: Hparams, key: jax.Array, data: Data, epochs: int):
    """A whole training run as one pure function of (hyper-parameters, key): vmap it to sweep naively.

    The key seeds the weights, the dropout stream and the batch order.
    """
    init_key, data_key = jax.random.split(key)
    state = init_state(task, hparams, init_key, data.train_images.shape[1:])

    def one_epoch(state, epoch):
        return run_epoch(task, state, data, epoch_keys(data_key, epoch))

    return jax.lax.scan(one_epoch, state, jnp.arange(epochs))


def _signature(tree: Any) -> tuple:
    """What a compiled epoch program is specialised to: structure, shapes, dtypes and placement of the state."""
    leaves, structure = jax.tree.flatten(tree)
    return structure, tuple((np.shape(leaf), getattr(leaf, 'dtype', type(leaf)), getattr(leaf, 'sharding', None))
                       for leaf in leaves)


def _to_python(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def fit(task: Task, state: TrainState, data: Data, *, epochs: int, data_key: jax.Array, members: bool = False,
        shuffle: str = 'shared', start_epoch: int = 0, history: Iterable[dict] = (),
        on_epoch_end: Callable[[int, TrainState, list[dict]], TrainState | None] | None = None,
        constrain_batch: Callable[[jax.Array], jax.Array] | None = None) -> tuple[TrainState, list[dict]]:
    """Trains from `start_epoch` to `epochs`; returns the final state and the per-epoch history.

    Each history row has epoch, train/val loss and accuracy (lists over members for a sweep), `seconds` (the
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
        order_key = epoch_keys(data_key, epoch)
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
        history.append({'epoch': epoch + 1, **{k: _to_python(v) for k, v in metrics.items()},
                        'seconds': seconds, 'compile_seconds': compile_seconds})
        if on_epoch_end is not None:
            state = on_epoch_end(epoch + 1, state, history) or state
        if task.early_stopping is not None and np.all(metrics['stopped']):
            break
    if task.early_stopping is not None and task.early_stopping.restore_best_weights:
        state = jax.jit(restore_best)(state)
    return state, history


def restore_best(state: TrainState) -> TrainState:
    """Keras's restore_best_weights at the end of training: each run's params and batch_stats of its best epoch."""
    best = where_members(state.early_stopping.has_best, state.best,
                         {'params': state.params, 'batch_stats': state.batch_stats})
    return state.replace(params=best['params'], batch_stats=best['batch_stats'])


def evaluate_members(task: Task, state: TrainState, images: jax.Array, labels: jax.Array,
                     members: bool = False) -> dict[str, Any]:
    """Evaluation-mode loss and accuracy as Python numbers (lists over members for a stacked state)."""
    check = lambda s, x, y: evaluate(task, s, x, y)
    if members:
        check = jax.vmap(check, in_axes=(0, None, None))
    return {k: _to_python(v) for k, v in jax.device_get(jax.jit(check)(state, images, labels)).items()}
