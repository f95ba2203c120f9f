"""Penalty terms added to the loss, with Keras's formulas: L1 = l1·Σ|w|, L2 = l2·Σw² (no ½).

`config.penalties` is a tuple of entries, each a Keras layer's regularizers for the layers its `layers` regex
names, e.g. the lecture's `Dense(256, kernel_regularizer=l1(0.001), bias_regularizer=l2(0.1),
activity_regularizer=l2(0.01))` on the first layer is
    dict(layers='^dense_0$', kernel_l1=0.001, bias_l2=0.1, activity_l2=0.01)
Every strength may differ between the members of one compiled sweep. The activity penalty reads the layer's
sown activation and is divided by the batch size, as tf.keras 2 does. Only dense layers (those with a kernel) are
penalised. `units` (a per-unit mask or weight vector, one number per unit of each named layer) regularizes some
neurons and not others, as the lecture allows.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from nets.registry import fits_float32, refuse_unknown

TARGETS = ('kernel', 'bias', 'activity')


def l1(weights: jax.Array) -> jax.Array:
    """Σ|w|."""
    return jnp.abs(weights).sum()


def l2(weights: jax.Array) -> jax.Array:
    """Σw², without Keras's missing ½."""
    return jnp.square(weights).sum()


# The penalty registry: name -> the elementwise term whose sum is the penalty (|w| for l1, w² for l2). Each entry's
# strength fields are <target>_<name>: kernel_l1, bias_l2, activity_l2, ...
PENALTIES: dict[str, Callable[[jax.Array], jax.Array]] = {'l1': jnp.abs, 'l2': jnp.square}
STRENGTHS = tuple(f'{target}_{name}' for target in TARGETS for name in PENALTIES)
FIELDS = ('layers', 'units', *STRENGTHS)


def per_unit_sum(terms: jax.Array, units: jax.Array | None = None) -> jax.Array:
    """Σ of `terms` [..., units], each unit's share weighted by `units` (a per-unit mask or weight vector) if given:
    one neuron, or a few, can be regularized alone."""
    if units is None:
        return terms.sum()
    return (terms.reshape(-1, terms.shape[-1]).sum(0) * units).sum()


def check(entries: Sequence[Mapping[str, Any]], layer_widths: Mapping[str, int]) -> None:
    """ValueError naming the field when an entry has an unknown field, a bad regex, matches no dense layer, or has
    per-unit weights of the wrong length. `layer_widths` maps each dense layer to its number of units."""
    for index, entry in enumerate(entries):
        refuse_unknown(entry, FIELDS, f'penalties[{index}]')
        for name in STRENGTHS:
            value = entry.get(name)
            if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
                raise ValueError(f'config.penalties[{index}].{name} must be a finite number >= 0, got {value!r}')
            if isinstance(value, (int, float)) and not fits_float32(value):
                raise ValueError(
                    f'config.penalties[{index}].{name} must be 0 or at least 1.2e-38 and at most 3.4e38 (float32), '
                    f'got {value!r}'
                )
        try:
            pattern = re.compile(entry.get('layers', '.*'))
        except (re.error, TypeError) as error:
            raise ValueError(f'penalties[{index}].layers is not a regex ({error}): {entry.get("layers")!r}') from None
        matched = [name for name in layer_widths if pattern.search(name)]
        if not matched:
            raise ValueError(
                f'penalties[{index}].layers={entry.get("layers")!r} matches no layer; layers: {", ".join(layer_widths)}'
            )
        units = entry.get('units')
        if units is not None:
            wrong = [name for name in matched if len(units) != layer_widths[name]]
            if wrong:
                raise ValueError(
                    f'penalties[{index}].units has {len(units)} weights but layer {wrong[0]} has '
                    f'{layer_widths[wrong[0]]} units'
                )


def sweepable_defaults(entries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Every strength an entry sets, keyed by its path under `penalties` ('[0].kernel_l2')."""
    return {
        f'[{index}].{name}': entry[name] for index, entry in enumerate(entries) for name in STRENGTHS if name in entry
    }


def reads_activations(entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any entry penalises activations (then training must capture the sown values)."""
    return any(name.startswith('activity_') for entry in entries for name in entry)


def make_penalty(entries: Sequence[Mapping[str, Any]]) -> Callable[[Any, Any, Mapping[str, jax.Array]], jax.Array]:
    """penalty(params, intermediates, hparams) for the entries; hparams holds the strengths by path."""
    entries = [dict(entry) for entry in entries]

    def penalty(params, intermediates, hparams):
        total = jnp.zeros((), jnp.float32)
        for index, entry in enumerate(entries):
            pattern = re.compile(entry.get('layers', '.*'))
            units = None if entry.get('units') is None else jnp.asarray(entry['units'], jnp.float32)
            # Dense layers only: batch norm's scale and offset are never penalised, as in Keras.
            for layer in (name for name in params if 'kernel' in params[name] and pattern.search(name)):
                for name in STRENGTHS:
                    if name not in entry:
                        continue
                    target, norm = name.split('_', 1)
                    strength = hparams[f'[{index}].{name}']
                    if target == 'activity':
                        # MLP layer dense_i sows its output as activation_i; the output layer sows nothing.
                        sown = intermediates.get(layer.replace('dense_', 'activation_'))
                        if layer.startswith('dense_') and sown is not None:
                            activation = sown[0]
                            terms = PENALTIES[norm](activation)
                            total = total + strength * per_unit_sum(terms, units) / activation.shape[0]
                    elif target in params[layer]:
                        total = total + strength * per_unit_sum(PENALTIES[norm](params[layer][target]), units)
        return total

    return penalty


class _NoState(NamedTuple):
    """The state of a transform that keeps none."""


def _update_with_params(name: str, change: Callable, chosen: Callable[[Any], Any]) -> optax.GradientTransformation:
    """A stateless transform that replaces the update u of each leaf w that `chosen(params)` marks by change(u, w)."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(f'{name} needs the params: pass them to the optimizer update')
        updates = jax.tree.map(lambda u, w, use: change(u, w) if use else u, updates, params, chosen(params))
        return updates, state

    return optax.GradientTransformation(lambda params: _NoState(), update)


def add_l1_sign(l1: float | jax.Array, mask: Callable[[Any], Any] | None = None) -> optax.GradientTransformation:
    """Adds l1·sign(w) to the updates: L1 as a transform (decoupled when chained after the optimizer's scaling,
    as `add_decayed_weights` is for L2). `mask(params)` chooses the leaves (kernels by default in the config)."""
    every_leaf = lambda params: jax.tree.map(lambda _: True, params)
    return _update_with_params('add_l1_sign', lambda u, w: u + l1 * jnp.sign(w), mask or every_leaf)


def max_norm(radius: float | jax.Array, mask: Callable[[Any], Any] | None = None) -> optax.GradientTransformation:
    """Max-norm (Srivastava et al. 2014): changes the final update so that each unit's incoming weight vector
    (a kernel's column, over all but the last axis) ends inside the ball of `radius`. Chain it last."""

    def project(kernel):
        return kernel * jnp.minimum(1.0, radius / jnp.maximum(unit_norms(kernel, keepdims=True), 1e-12))

    return _update_with_params('max_norm', lambda u, w: project(w + u) - w, mask or _matrices)


def unit_norms(kernel: jax.Array, keepdims: bool = False) -> jax.Array:
    """Each unit's incoming weight norm: a kernel's column norms, over all but the last axis."""
    return jnp.sqrt(jnp.sum(jnp.square(kernel), axis=tuple(range(kernel.ndim - 1)), keepdims=keepdims))


def _matrices(params):
    return jax.tree.map(lambda w: w.ndim > 1, params)


def max_norm_saturation(
    params: Any, radius: float | jax.Array, mask: Callable[[Any], Any] | None = None, rtol: float = 1e-3
) -> jax.Array:
    """How much a max-norm constraint binds: the fraction of the units it constrains (those of the leaves
    `mask(params)` marks, every matrix by default, as in `max_norm`) whose incoming weight norm is at least
    (1 - rtol)·radius, so on the ball's surface. Near 0, the constraint does nothing."""
    chosen = jax.tree.leaves(jax.tree.map(lambda w, use: unit_norms(w) if use else None, params,
                                          (mask or _matrices)(params)))  # fmt: skip
    if not chosen:
        raise ValueError('max_norm_saturation: no leaf of params is constrained')
    at_radius = sum(jnp.sum(norms >= (1 - rtol) * radius) for norms in chosen)
    return at_radius / sum(norms.size for norms in chosen)


def mc_dropout_predict(task: Any, state: Any, images: jax.Array, samples: int, key: jax.Array) -> jax.Array:
    """Dropout as an ensemble: the mean of softmax outputs over `samples` dropout masks, one mask a key split from
    `key`. The model runs in training mode, so batch norm (if any) normalises with the statistics of `images`."""
    variables = {'params': state.params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}
    model = task.model(state.hparams, state.params)

    def one(sample_key):
        logits = model.apply(variables, images, train=True, rngs={'dropout': sample_key}, mutable=['batch_stats'])[0]
        return jax.nn.softmax(logits)

    return jax.lax.map(one, jax.random.split(key, samples)).mean(0)
