"""Diagnostics that read what a model sowed: per-layer activation statistics, gradient norms and dead units.

They are streaming statistics in the init/update/summarize style, so a probe set of any size is read in chunks:

    acc = init(intermediates, params)         zeroed accumulators shaped like one chunk's sown values and params
    acc = update(acc, intermediates, grads, n) adds a chunk of n examples (grads: of its mean loss)
    summarize(acc)                            per-layer numbers, as arrays [layers]

`probe` runs them over a probe set in evaluation mode (no dropout, batch norm's running statistics) for one member,
`prober` compiles it for a stacked sweep too, and `epoch_hook` records a prober's numbers in the history every K
epochs through the core's epoch hook. What they report, per hidden layer i (from the sown `preactivation_i` and
`activation_i`):

    activation_mean, activation_variance   over every example and unit of the layer's output
    preactivation_variance                 the same for what enters the activation function
    dead_fraction                          units whose output is exactly 0 on every probe example (ReLU's dead
                                           units; a leaky ReLU's output is 0 only at z = 0)
    inactive_fraction                      units whose pre-activation is ≤ 0 on every probe example (for leaky
                                           ReLU these still pass gradient, scaled by the slope)

and per dense layer, hidden and output: `gradient_norm`, the L2 norm of the gradient of the mean probe loss with
respect to the layer's kernel.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nets import activations, train

STATISTICS = (
    'activation_mean',
    'activation_variance',
    'preactivation_variance',
    'dead_fraction',
    'inactive_fraction',
    'gradient_norm',
)


def _index(name: str) -> int:
    return int(name.rsplit('_', 1)[1])


def _sown(intermediates: Mapping[str, Any], kind: str) -> list[Any]:
    """The sown `<kind>_i` values of every hidden layer, in layer order, each [examples, units]."""
    names = sorted((name for name in intermediates if re.fullmatch(f'{kind}_\\d+', name)), key=_index)
    return [intermediates[name][0] for name in names]


def dense_layers(params: Mapping[str, Any]) -> list[str]:
    """The modules of `params` with a kernel, hidden layers (dense_i) first in order, then the others by name."""
    names = [name for name in params if 'kernel' in params[name]]
    return sorted(names, key=lambda name: (0, _index(name)) if re.fullmatch(r'dense_\d+', name) else (1, name))


def init(intermediates: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Zeroed accumulators for the hidden layers that `intermediates` holds and the dense layers of `params`."""
    units = [a.shape[-1] for a in _sown(intermediates, 'activation')]
    zeros = lambda dtype=jnp.float32: [jnp.zeros((n,), dtype) for n in units]
    return {
        'count': jnp.zeros((), jnp.float32),
        'sum': zeros(),
        'sum_squares': zeros(),
        'preactivation_sum': zeros(),
        'preactivation_sum_squares': zeros(),
        'nonzero': zeros(bool),  # the unit's output was non-zero on some example
        'positive': zeros(bool),  # its pre-activation was > 0 on some example
        'gradient_sum': [jnp.zeros_like(params[name]['kernel']) for name in dense_layers(params)],
    }


def update(
    acc: dict[str, Any], intermediates: Mapping[str, Any], grads: Mapping[str, Any], count: int
) -> dict[str, Any]:
    """Adds a chunk of `count` examples: its sown values, and `grads`, the gradient of the chunk's mean loss."""
    outputs, inputs = _sown(intermediates, 'activation'), _sown(intermediates, 'preactivation')
    add = lambda totals, values: [t + v for t, v in zip(totals, values)]
    return {
        'count': acc['count'] + count,
        'sum': add(acc['sum'], [a.sum(0) for a in outputs]),
        'sum_squares': add(acc['sum_squares'], [(a * a).sum(0) for a in outputs]),
        'preactivation_sum': add(acc['preactivation_sum'], [z.sum(0) for z in inputs]),
        'preactivation_sum_squares': add(acc['preactivation_sum_squares'], [(z * z).sum(0) for z in inputs]),
        'nonzero': [seen | jnp.any(a != 0, 0) for seen, a in zip(acc['nonzero'], outputs)],
        'positive': [seen | jnp.any(z > 0, 0) for seen, z in zip(acc['positive'], inputs)],
        # The mean loss's gradient is linear in the examples: weight each chunk's by its size.
        'gradient_sum': add(acc['gradient_sum'], [grads[name]['kernel'] * count for name in dense_layers(grads)]),
    }


def _moments(total: list[jax.Array], squares: list[jax.Array], count: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance over examples and units, per layer, from per-unit sums."""
    mean = jnp.stack([t.sum() / (count * t.shape[0]) for t in total]) if total else jnp.zeros((0,))
    second = jnp.stack([s.sum() / (count * s.shape[0]) for s in squares]) if squares else jnp.zeros((0,))
    return mean, jnp.maximum(second - mean * mean, 0.0)


def summarize(acc: dict[str, Any]) -> dict[str, jax.Array]:
    """Per-layer numbers (see the module docstring), each an array [layers]."""
    mean, variance = _moments(acc['sum'], acc['sum_squares'], acc['count'])
    _, preactivation_variance = _moments(acc['preactivation_sum'], acc['preactivation_sum_squares'], acc['count'])
    fraction = lambda flags: jnp.stack([(~f).mean(dtype=jnp.float32) for f in flags]) if flags else jnp.zeros((0,))
    return {
        'activation_mean': mean,
        'activation_variance': variance,
        'preactivation_variance': preactivation_variance,
        'dead_fraction': fraction(acc['nonzero']),
        'inactive_fraction': fraction(acc['positive']),
        'gradient_norm': jnp.stack([jnp.linalg.norm((g / acc['count']).ravel()) for g in acc['gradient_sum']]),
    }


def sown_and_gradients(task: train.Task, state: train.TrainState, images: jax.Array, labels: jax.Array):
    """One member's sown values and the gradient of its mean loss on a batch, in evaluation mode."""
    model = task.model(state.hparams, state.params)
    targets = task.loss.target(images, labels)

    def loss(params):
        variables = {'params': params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}
        outputs, sown = model.apply(variables, images, train=False, mutable=['intermediates'])
        return task.loss.value(outputs, targets), sown.get('intermediates', {})

    grads, intermediates = jax.grad(loss, has_aux=True)(state.params)
    return intermediates, grads


def probe(
    task: train.Task, state: train.TrainState, images: jax.Array, labels: jax.Array, chunk: int | None = None
) -> dict[str, jax.Array]:
    """The diagnostics of one member on a probe set, read in chunks of `chunk` examples (all at once by default);
    pure, so jit or vmap it."""
    chunk = chunk or images.shape[0]
    if images.shape[0] % chunk:
        raise ValueError(f'the probe set ({images.shape[0]} examples) must split into whole chunks of {chunk}')
    split = lambda array: None if array is None else array.reshape(-1, chunk, *array.shape[1:])
    batches = (split(images), split(labels))
    shapes = jax.eval_shape(
        lambda batch: sown_and_gradients(task, state, *batch)[0], jax.tree.map(lambda a: a[0], batches)
    )

    def body(acc, batch):
        intermediates, grads = sown_and_gradients(task, state, *batch)
        return update(acc, intermediates, grads, chunk), None

    acc, _ = jax.lax.scan(body, init(shapes, state.params), batches)
    return summarize(acc)


def prober(
    task: train.Task,
    images: jax.Array,
    labels: jax.Array,
    *,
    members: bool = False,
    chunk: int | None = None,
) -> Callable[[train.TrainState], dict[str, list]]:
    """A compiled `probe` on a fixed probe set: state -> Python lists ([members][layers] for a stacked state, with
    `members`, else [layers]); it compiles once per state shape."""
    run = lambda s: probe(task, s, images, labels, chunk)
    program = jax.jit(jax.vmap(run) if members else run)
    return lambda state: {name: np.asarray(value).tolist() for name, value in jax.device_get(program(state)).items()}


def measure(
    task: train.Task,
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    members: bool = False,
    chunk: int | None = None,
) -> dict[str, list]:
    """`probe` of every member of a (stacked) state, once, as Python lists."""
    return prober(task, images, labels, members=members, chunk=chunk)(state)


def epoch_hook(measure_state: Callable[[train.TrainState], dict[str, list]], every: int = 1):
    """An epoch hook that adds `measure_state(state)` (a `prober`) to the history's row every `every` epochs: a list
    per statistic, over layers, and over members first for a sweep."""

    def hook(epoch: int, state: train.TrainState, history: list[dict]) -> None:
        if epoch % every == 0:
            history[-1].update(measure_state(state))

    return hook


def activation_figure(names=tuple(activations.ACTIVATIONS), negative_slope: float = 0.1, span: float = 5.0):
    """A matplotlib figure with each activation and its derivative on [-span, span], one panel each, like the
    lecture's slides (leaky ReLU drawn with a visible slope)."""
    import matplotlib.pyplot as plt

    z = np.linspace(-span, span, 401, dtype=np.float32)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for axis, name in zip(axes[0], names):
        function = activations.get_activation(name, negative_slope)
        derivative = activations.activation_derivative(name, negative_slope)
        axis.plot(z, np.asarray(function(z)), label=f'{name}(z)')
        axis.plot(z, np.asarray(derivative(z)), '--', label=f"{name}'(z)")
        axis.axhline(0, color='gray', linewidth=0.5)
        axis.axvline(0, color='gray', linewidth=0.5)
        axis.set_title(name if name != 'leaky_relu' else f'leaky_relu (a = {negative_slope:g})')
        axis.set_xlabel('z')
        axis.set_ylim(-1.5, 2.5)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
