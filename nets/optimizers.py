"""Optimizers, learning-rate schedules and extra optax transforms by name, and the chain a config describes.

The chain is always, in this order:
    gradient transforms -> the optimizer's scaling -> decoupled transforms -> learning rate (or schedule)
    -> update transforms
so that a decoupled weight decay is scaled by the learning rate as in AdamW, and a projection or a freeze sees the
final update. Within a stage, transforms keep the order of `config.optimizer.transforms`. Every scalar named in a
registry entry's `sweepable` may be a traced value, so that the members of one compiled sweep may differ in it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from nets import regularizers
from nets.masks import param_mask
from nets.registry import fits_float32, lookup, refuse_unknown

STAGES = ('gradient', 'decoupled', 'update')


@dataclasses.dataclass(frozen=True)
class Component:
    """A registry entry: `build(**fields)` makes it; `fields` are the allowed config fields with their defaults
    (None: required), and the `sweepable` ones may be traced scalars."""

    build: Callable[..., Any]
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sweepable: tuple[str, ...] = ()
    stage: str = 'update'  # transforms only


# The optimizer's own scaling, without the learning rate. Keras's defaults: RMSprop rho 0.9, epsilon 1e-7.
OPTIMIZERS: dict[str, Component] = {
    'sgd': Component(lambda: optax.identity()),
    'momentum': Component(lambda momentum: optax.trace(decay=momentum), {'momentum': 0.9}, ('momentum',)),
    'nesterov': Component(
        lambda momentum: optax.trace(decay=momentum, nesterov=True), {'momentum': 0.9}, ('momentum',)
    ),
    'rmsprop': Component(
        lambda rho, epsilon: optax.scale_by_rms(decay=rho, eps=epsilon), {'rho': 0.9, 'epsilon': 1e-7}
    ),
    'adam': Component(
        lambda b1, b2, epsilon: optax.scale_by_adam(b1=b1, b2=b2, eps=epsilon),
        {'b1': 0.9, 'b2': 0.999, 'epsilon': 1e-7},
    ),
}


def _warmup_cosine_decay(learning_rate, warmup_steps, decay_steps, end_value):
    """optax.warmup_cosine_decay_schedule from 0, built from its parts: optax's own branches on the peak's value,
    which a traced (swept) learning rate does not have."""
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, learning_rate, warmup_steps),
            optax.cosine_decay_schedule(learning_rate, decay_steps - warmup_steps, alpha=end_value / learning_rate),
        ],
        [warmup_steps],
    )


def _step_decay(learning_rate, boundaries, factor):
    return optax.piecewise_constant_schedule(learning_rate, {int(step): factor for step in boundaries})


# Schedules of the step count; each starts from (or peaks at) the learning rate, which may be traced.
SCHEDULES: dict[str, Component] = {
    'constant': Component(lambda learning_rate: learning_rate),
    'step_decay': Component(_step_decay, {'boundaries': None, 'factor': 0.1}),
    'exponential_decay': Component(
        lambda learning_rate, transition_steps, decay_rate, staircase: optax.exponential_decay(
            learning_rate, transition_steps, decay_rate, staircase=staircase
        ),
        {'transition_steps': None, 'decay_rate': None, 'staircase': False},
    ),
    'cosine_decay': Component(
        lambda learning_rate, decay_steps, alpha: optax.cosine_decay_schedule(learning_rate, decay_steps, alpha),
        {'decay_steps': None, 'alpha': 0.0},
    ),
    'warmup_cosine_decay': Component(
        _warmup_cosine_decay, {'warmup_steps': None, 'decay_steps': None, 'end_value': 0.0}
    ),
}

# Extra transforms chained around the optimizer. The regularization, pretraining and pruning rooms add theirs.
TRANSFORMS: dict[str, Component] = {
    'clip_by_global_norm': Component(optax.clip_by_global_norm, {'max_norm': None}, ('max_norm',), 'gradient'),
    # Decoupled weight decay (Loshchilov & Hutter); by default on kernels only, never biases or batch norm.
    'add_decayed_weights': Component(
        lambda weight_decay, params: optax.add_decayed_weights(weight_decay, mask=param_mask(params)),
        {'weight_decay': None, 'params': 'kernel$'},
        ('weight_decay',),
        'decoupled',
    ),
    # L1 as a transform: adds l1·sign(w), decoupled like the weight decay above; kernels only by default.
    'add_l1_sign': Component(
        lambda l1, params: regularizers.add_l1_sign(l1, mask=param_mask(params)),
        {'l1': None, 'params': 'kernel$'},
        ('l1',),
        'decoupled',
    ),
    # No update for the params whose path matches (a frozen encoder, say).
    'freeze': Component(
        lambda params: optax.masked(optax.set_to_zero(), param_mask(params)), {'params': None}, (), 'update'
    ),
    # Scales the updates by `factor` when the training loss (the mean over `accumulation_size` steps) has not improved
    # for `patience` such means; the step passes each batch's loss as `value`.
    'reduce_on_plateau': Component(
        lambda factor, patience, rtol, atol, cooldown, accumulation_size, min_scale: optax.contrib.reduce_on_plateau(
            factor=factor,
            patience=patience,
            rtol=rtol,
            atol=atol,
            cooldown=cooldown,
            accumulation_size=accumulation_size,
            min_scale=min_scale,
        ),
        {
            'factor': 0.1,
            'patience': 10,
            'rtol': 1e-4,
            'atol': 0.0,
            'cooldown': 0,
            'accumulation_size': 1,
            'min_scale': 0.0,
        },
        (),
        'update',
    ),  # fmt: skip
    # Max-norm: after the update, every unit's incoming weights lie in a ball of this radius; kernels by default.
    'max_norm': Component(
        lambda max_norm, params: regularizers.max_norm(max_norm, mask=param_mask(params)),
        {'max_norm': None, 'params': 'kernel$'},
        ('max_norm',),
        'update',
    ),
}


def scale_updates(factor: float | jax.Array, params: str) -> optax.GradientTransformation:
    """Multiplies the updates of the params whose path matches `params` by `factor` (a lower learning rate for a
    pretrained encoder), and leaves the others alone: an optax `multi_transform` over two labels."""
    matches = param_mask(params)
    labels = lambda tree: jax.tree.map(lambda match: 'scaled' if match else 'other', matches(tree))
    return optax.multi_transform({'scaled': optax.scale(factor), 'other': optax.identity()}, labels)


# An update-stage transform (after the learning rate): by default on the hidden layers, a pretrained encoder.
TRANSFORMS['scale_updates'] = Component(scale_updates, {'factor': None, 'params': '^dense_'}, ('factor',), 'update')


def check_fields(component: Component, fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The component's fields with defaults filled in; ValueError naming `where` on an unknown or missing field."""
    refuse_unknown(fields, component.fields, where)
    values = {**component.fields, **fields}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f'{where}.{missing[0]} must be set')
    return values


def _split(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    entry = dict(entry)
    return entry.pop('name', None), entry


def shared_fields(registry: Mapping[str, Component]) -> dict[str, Any]:
    """Every field of every entry of `registry` with its default (None: required); entries that share a field
    share its default, so that a config may list them all and still mean the same run whichever entry it names."""
    fields: dict[str, Any] = {}
    for name, component in registry.items():
        for field, default in component.fields.items():
            if fields.setdefault(field, default) != default:
                raise ValueError(f'{name}.{field} defaults to {default!r}, another entry to {fields[field]!r}')
    return fields


def own_fields(component: Component, name: str, fields: Mapping[str, Any], shared: Mapping[str, Any], where: str):
    """The checked fields of `component` (entry `name`) among `fields`, which may list every entry's fields (as
    `shared_fields` gives them): a field of another entry must be unset (None) or at its default, and an unset
    field of this one takes its default."""
    own = {}
    for field, value in fields.items():
        if field in component.fields or field not in shared:
            if value is not None:
                own[field] = value
        elif value is not None and value != shared[field]:
            allowed = ', '.join(component.fields) or 'none'
            kind = where.split('.')[-1]
            raise ValueError(f'{where}.{field}={value!r} does not apply to {kind} {name!r} (its fields: {allowed})')
    return check_fields(component, own, where)


# What a config may list under config.optimizer and config.optimizer.schedule, whichever entry it names.
OPTIMIZER_FIELDS = shared_fields(OPTIMIZERS)
SCHEDULE_FIELDS = shared_fields(SCHEDULES)


def _optimizer(config: Mapping[str, Any]) -> tuple[Component, dict[str, Any]]:
    """The optimizer entry and its checked fields (learning rate, schedule and transforms aside)."""
    name, fields = _split(config)
    for other in ('learning_rate', 'schedule', 'transforms'):
        fields.pop(other, None)
    component = lookup(OPTIMIZERS, name, 'optimizer')
    return component, own_fields(component, name, fields, OPTIMIZER_FIELDS, 'optimizer')


def _transforms(config: Mapping[str, Any]):
    """(index, entry, checked fields) of every extra transform, in config order."""
    for index, entry in enumerate(config.get('transforms') or ()):
        name, fields = _split(entry)
        component = lookup(TRANSFORMS, name, 'transform')
        values = check_fields(component, fields, f'optimizer.transforms[{index}]')
        for field in component.sweepable:  # a strength: a norm bound must be > 0, a decay or a factor may be 0 (off)
            value, positive = values[field], field == 'max_norm'
            if isinstance(value, (int, float)) and not (
                math.isfinite(value) and (value > 0 if positive else value >= 0) and fits_float32(value)
            ):
                allowed = 'a finite number ' + ('> 0' if positive else '>= 0') + ' that float32 holds'
                raise ValueError(f'config.optimizer.transforms[{index}].{field} must be {allowed}, got {value!r}')
        yield index, component, values


def _learning_rate(config: Mapping[str, Any], learning_rate: Any) -> Any:
    """The learning rate, or the schedule of the step count that starts from (or peaks at) it."""
    schedule = dict(config.get('schedule') or {})
    if not schedule:
        return learning_rate
    name, fields = _split(schedule)
    component = lookup(SCHEDULES, name, 'schedule')
    return component.build(learning_rate, **own_fields(component, name, fields, SCHEDULE_FIELDS, 'optimizer.schedule'))


def sweepable_defaults(config: Mapping[str, Any]) -> dict[str, float]:
    """The optimizer's traced scalars and their config values, keyed by their path under `optimizer`."""
    optimizer, fields = _optimizer(config)
    values = {'learning_rate': config.get('learning_rate')}
    values |= {field: fields[field] for field in optimizer.sweepable}
    for index, component, checked in _transforms(config):
        values |= {f'transforms[{index}].{field}': checked[field] for field in component.sweepable}
    _learning_rate(config, 1.0)  # checks the schedule's fields
    return values


def build(config: Mapping[str, Any], hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    """The chain `config` (config.optimizer) describes, reading every sweepable scalar from `hparams`."""
    optimizer, fields = _optimizer(config)
    scaling = optimizer.build(**{**fields, **{field: hparams[field] for field in optimizer.sweepable}})
    stages = {stage: [] for stage in STAGES}
    for index, component, values in _transforms(config):
        values |= {field: hparams[f'transforms[{index}].{field}'] for field in component.sweepable}
        stages[component.stage].append(component.build(**values))
    return optax.chain(
        *stages['gradient'],
        scaling,
        *stages['decoupled'],
        optax.scale_by_learning_rate(_learning_rate(config, hparams['learning_rate'])),
        *stages['update'],
    )


def learning_rate_at(config: Mapping[str, Any], learning_rate: float, step: int | jax.Array) -> jax.Array:
    """The learning rate the chain applies at `step` (for reports and plots of schedules)."""
    schedule = _learning_rate(config, learning_rate)
    return jnp.asarray(schedule(step) if callable(schedule) else schedule)
