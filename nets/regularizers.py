"""Penalty terms added to the loss, with Keras's formulas: L1 = l1·Σ|w|, L2 = l2·Σw² (no ½).

`config.penalties` is a tuple of entries, each a Keras layer's regularizers for the layers its `layers` regex
names, e.g. the lecture's `Dense(256, kernel_regularizer=l1(0.001), bias_regularizer=l2(0.1),
activity_regularizer=l2(0.01))` on the first layer is
    dict(layers='^dense_0$', kernel_l1=0.001, bias_l2=0.1, activity_l2=0.01)
Every strength may differ between the members of one compiled sweep. The activity penalty reads the layer's
sown activation and is divided by the batch size, as tf.keras 2 does. Only dense layers (those with a kernel) are
penalised.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

TARGETS = ('kernel', 'bias', 'activity')


def l1(weights: jax.Array) -> jax.Array:
    """Σ|w|."""
    return jnp.abs(weights).sum()


def l2(weights: jax.Array) -> jax.Array:
    """Σw², without Keras's missing ½."""
    return jnp.square(weights).sum()


# The penalty registry: name -> norm. Each entry's strength fields are <target>_<name> (kernel_l1, activity_l2, ...).
PENALTIES: dict[str, Callable[[jax.Array], jax.Array]] = {'l1': l1, 'l2': l2}
STRENGTHS = tuple(f'{target}_{name}' for target in TARGETS for name in PENALTIES)
FIELDS = ('layers', *STRENGTHS)


def check(entries: Sequence[Mapping[str, Any]], layer_names: Sequence[str]) -> None:
    """ValueError naming the field when an entry has an unknown field, a bad regex or matches no layer."""
    for index, entry in enumerate(entries):
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise ValueError(f'unknown field penalties[{index}].{unknown[0]}; allowed: {", ".join(FIELDS)}')
        try:
            pattern = re.compile(entry.get('layers', '.*'))
        except (re.error, TypeError) as error:
            raise ValueError(f'penalties[{index}].layers is not a regex ({error}): {entry.get("layers")!r}') from None
        if not any(pattern.search(name) for name in layer_names):
            raise ValueError(
                f'penalties[{index}].layers={entry.get("layers")!r} matches no layer; layers: {", ".join(layer_names)}'
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
                            total = total + strength * PENALTIES[norm](activation) / activation.shape[0]
                    elif target in params[layer]:
                        total = total + strength * PENALTIES[norm](params[layer][target])
        return total

    return penalty
