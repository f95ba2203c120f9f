"""The task schema: one config describes a training task, and `build` turns it into a train.Task.

    config.model          {'name': 'mlp' | 'autoencoder', ...the module's fields}
    config.optimizer      {'name': 'sgd' | 'momentum' | 'nesterov' | 'rmsprop' | 'adam', 'learning_rate': float,
                           ...its constants, 'schedule': {} or {'name': ..., ...}, 'transforms': ({'name': ...}, ...)}
    config.penalties      ({'layers': regex, 'kernel_l2': float, ...}, ...)   Keras-style, see nets.regularizers
    config.loss           'softmax_cross_entropy' | 'mse' | 'binary_cross_entropy'
    config.early_stopping {} (off), keras.callbacks.EarlyStopping's arguments, or early_stopping_config(...)
    config.batch_size     int
    config.order          'reshuffle' (default) | 'fixed' | 'sorted_by_class' | 'hardest_first' | ...  see nets.orders

Every scalar that a sweep may vary is a hyper-parameter, named by its config path as `--config.PATH` would name it
('optimizer.learning_rate', 'model.hidden_dropout', 'penalties[0].kernel_l2',
'optimizer.transforms[1].weight_decay'). The state carries them as float32 scalars and each is routed to the part
that reads it. `build` checks every field against the real input shape before any data loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from nets import early_stopping as early_stopping_lib, losses, models, optimizers, orders, regularizers, train
from nets.registry import lookup, refuse_unknown

FIELDS = ('model', 'optimizer', 'penalties', 'loss', 'early_stopping', 'batch_size')


def plain(value: Any) -> Any:
    """A ConfigDict (or anything with to_dict) as plain dicts and tuples."""
    value = value.to_dict() if hasattr(value, 'to_dict') else value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(plain(item) for item in value)
    return value


@contextlib.contextmanager
def _section(name: str):
    """Re-raises a ValueError or TypeError from building one section of the config as one line naming it."""
    try:
        yield
    except (ValueError, TypeError) as error:
        message = str(error)
        if message.startswith('config.'):
            raise
        if message.startswith(name) or f'field {name}' in message:  # already names its field
            message = message.replace(f'field {name}', f'field config.{name}')
            raise ValueError(message if message.startswith('unknown') else f'config.{message}') from None
        raise ValueError(f'config.{name}: {message}') from None


def _check_number(path: str, value: Any, low: float = -math.inf, low_inclusive: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low)
    if not ok:
        bound = f'>= {low}' if low_inclusive else f'> {low}'
        raise ValueError(f'config.{path} must be a finite number {bound}, got {value!r}')


# The model fields model_config leaves out unless given: a traced dropout rate of 0 still draws a mask every step.
_UNSET_UNLESS_GIVEN = ('input_dropout', 'hidden_dropout')


def model_config(name: str = 'mlp', **fields: Any) -> ml_collections.ConfigDict:
    """config.model with every field of model `name` at its default, updated by `fields`, so that `--config.model.X`
    can set any of them; a None default becomes a typed placeholder that the command line can fill. Dropout rates
    are there only when given (a rate that a sweep may trace costs a mask draw even at 0)."""
    spec = models.get_model(name)
    config = ml_collections.ConfigDict({'name': name})
    for field in dataclasses.fields(spec.module):
        if field.name in ('parent', 'name') or (field.name in _UNSET_UNLESS_GIVEN and field.name not in fields):
            continue
        value = fields.pop(field.name, field.default)
        config[field.name] = _settable(field.name, value)
    refuse_unknown(fields, config, 'model')
    return config


def optimizer_config(
    name: str = 'sgd',
    learning_rate: float | None = None,
    *,
    schedule: str | Mapping[str, Any] | None = 'constant',
    transforms: Sequence[Mapping[str, Any]] | None = None,
    **fields: Any,
) -> ml_collections.ConfigDict:
    """config.optimizer: optimizer `name` and every optimizer's constants at their defaults (nets.optimizers
    refuses a constant the named optimizer does not use unless it is at its default), updated by `fields`, so that
    `--config.optimizer.name=adam --config.optimizer.b2=0.99` works; `schedule` (a name, or a dict of its fields)
    lists every schedule's fields the same way. An experiment that sets the learning rate, the schedule or the
    transforms in code passes None for it, so that the command line cannot set a value the run would ignore."""
    config = ml_collections.ConfigDict({'name': name})
    if learning_rate is not None:
        config.learning_rate = learning_rate
    config.update(_listing(optimizers.OPTIMIZER_FIELDS, fields, 'optimizer'))
    if schedule is not None:
        schedule = {'name': schedule} if isinstance(schedule, str) else dict(schedule)
        listing = {'name': schedule.pop('name'), **_listing(optimizers.SCHEDULE_FIELDS, schedule, 'optimizer.schedule')}
        config.schedule = ml_collections.ConfigDict(listing)
    if transforms is not None:
        config.transforms = tuple(transforms)
    return config


def _listing(defaults: Mapping[str, Any], fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Every field of `defaults`, updated by `fields`, unset ones as typed placeholders."""
    refuse_unknown(fields, defaults, where)
    return {field: _settable(field, fields.get(field, default)) for field, default in defaults.items()}


# The type of each config field whose default is None, so that the command line can fill it.
_PLACEHOLDER_TYPES = {'batch_norm': str, 'init_std': float, 'batch_norm_layers': tuple, 'boundaries': tuple,
                      'transition_steps': int, 'decay_rate': float, 'decay_steps': int,
                      'warmup_steps': int, 'baseline': float}  # fmt: skip


def _settable(field: str, value: Any) -> Any:
    return ml_collections.config_dict.placeholder(_PLACEHOLDER_TYPES[field]) if value is None else value


def early_stopping_config(**fields: Any) -> ml_collections.ConfigDict:
    """config.early_stopping with every argument of keras.callbacks.EarlyStopping at its default, updated by
    `fields`, and `enabled` (True once any field is given), so that `--config.early_stopping.enabled=True
    --config.early_stopping.patience=5` turns it on from the command line."""
    config = ml_collections.ConfigDict({'enabled': bool(fields)})
    for field in dataclasses.fields(early_stopping_lib.EarlyStopping):
        value = fields.pop(field.name, field.default)
        config[field.name] = _settable(field.name, value)
    refuse_unknown(fields, config, 'early_stopping')
    return config


def task_config(
    model: Mapping[str, Any] | None = None,
    optimizer: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 128,
    loss: str = 'softmax_cross_entropy',
    penalties: Sequence[Mapping[str, Any]] = (),
    early_stopping: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The task schema's fields of a config, for `config.update(...)`: `model` and `optimizer` (from model_config
    and optimizer_config; left out when None), the batch size, the loss, the penalties (none) and early stopping
    (off, every argument listed), so that the command line can set any of them."""
    fields = {'model': model, 'optimizer': optimizer}
    return {name: value for name, value in fields.items() if value is not None} | {
        'penalties': tuple(penalties),
        'loss': loss,
        'early_stopping': early_stopping_config() if early_stopping is None else early_stopping,
        'batch_size': batch_size,
    }


def sweepable_defaults(config: Mapping[str, Any]) -> dict[str, float]:
    """Every hyper-parameter of the task (path -> its config value); a sweep may give each member others."""
    config = plain(config)
    model = dict(config['model'])
    spec = models.get_model(model.pop('name', 'mlp'))
    values = {f'model.{name}': model[name] for name in spec.sweepable if name in model}
    with _section('optimizer'):
        values |= {
            f'optimizer.{name}': value for name, value in optimizers.sweepable_defaults(config['optimizer']).items()
        }
    values |= {
        f'penalties{name}': value
        for name, value in regularizers.sweepable_defaults(config.get('penalties') or ()).items()
    }
    return values


def _route(hparams: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The hyper-parameters under `prefix`, with the prefix removed: what the model or optimizer reads."""
    return {name[len(prefix) :]: value for name, value in hparams.items() if name.startswith(prefix)}


def build(
    config: Mapping[str, Any],
    input_shape: Sequence[int],
    after_update: Callable[[train.TrainState], train.TrainState] | None = None,
) -> tuple[train.Task, dict[str, Any]]:
    """The Task that `config` describes and its hyper-parameters (path -> jax float32 scalar).

    Raises ValueError with one line naming the field, the value and what is allowed, before any data loads.
    """
    config = plain(config)
    missing = [name for name in ('model', 'optimizer', 'batch_size') if name not in config]
    if missing:
        raise ValueError(f'config.{missing[0]} is missing; a task needs {", ".join(FIELDS)}')
    batch_size = config['batch_size']
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f'config.batch_size must be a positive integer, got {batch_size!r}')

    model_config = dict(config['model'])
    with _section('model'):
        spec = models.get_model(model_config.pop('name', 'mlp'))
        allowed = [field.name for field in dataclasses.fields(spec.module) if field.name not in ('parent', 'name')]
        refuse_unknown(model_config, allowed, 'model')
    static_model = {name: value for name, value in model_config.items() if name not in spec.sweepable}

    def make_model(hparams, architecture=None):
        return spec.module(**{**static_model, **(architecture or {})}, **_route(hparams, 'model.'))

    optimizer_config = config['optimizer']
    _check_number('optimizer.learning_rate', optimizer_config.get('learning_rate'), 0.0, low_inclusive=False)
    make_optimizer = lambda hparams: optimizers.build(optimizer_config, _route(hparams, 'optimizer.'))

    with _section('loss'):
        loss = losses.get_loss(config.get('loss', 'softmax_cross_entropy'))
    with _section('order'):
        order = orders.get_order(config.get('order', 'reshuffle'))
        if order.reads_labels and loss.targets != 'labels':
            raise ValueError(
                f'order {config["order"]!r} reads the labels, which a loss whose targets are the inputs does not '
                'have; allowed here: ' + ', '.join(name for name, o in orders.ORDERS.items() if not o.reads_labels)
            )

    defaults = sweepable_defaults(config)
    for path, value in defaults.items():
        _check_number(path, value)

    penalties = tuple(config.get('penalties') or ())
    with _section('early_stopping'):
        early = dict(config.get('early_stopping') or {})
        enabled = early.pop('enabled', bool(early))
        checked = early_stopping_lib.EarlyStopping(**early)  # its fields are checked even while it is off
        rule = checked if enabled else None
    penalty = None
    if penalties:
        penalty_of = regularizers.make_penalty(penalties)
        penalty = lambda params, intermediates, hparams: penalty_of(params, intermediates, _route(hparams, 'penalties'))
    task = train.Task(
        make_model=make_model,
        make_optimizer=make_optimizer,
        batch_size=batch_size,
        loss=loss,
        penalty=penalty,
        reads_activations=regularizers.reads_activations(penalties),
        order=order,
        early_stopping=rule,
        after_update=after_update,
        architecture_of=spec.architecture,
    )

    # Build everything once with concrete numbers, so that names, ranges and shapes fail here, not mid-run.
    def probe():
        state = train.init_state(task, defaults, jax.random.PRNGKey(0), input_shape)
        variables = {'params': state.params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}
        return state, make_model(defaults).apply(variables, np.zeros((2, *input_shape), np.float32), train=False)

    with _section('model'):
        state, outputs = jax.eval_shape(probe)
    with _section('penalties'):
        widths = {name: leaves['kernel'].shape[-1] for name, leaves in state.params.items() if 'kernel' in leaves}
        regularizers.check(penalties, widths)
    features = int(np.prod(input_shape))
    if loss.targets == 'inputs' and outputs.shape != (2, features):
        raise ValueError(
            f'config.loss={config.get("loss")!r} reconstructs the input ({features} features), but '
            f'model {config["model"].get("name", "mlp")!r} outputs {outputs.shape[1:]}; use a model '
            'such as autoencoder'
        )
    if loss.targets == 'labels' and spec.outputs == 'inputs':
        raise ValueError(
            f'config.loss={config.get("loss", "softmax_cross_entropy")!r} scores class labels, but model '
            f'{config["model"]["name"]!r} reconstructs its input ({features} outputs, no classes); use a loss whose '
            'targets are the inputs: '
            + ', '.join(name for name, other in losses.LOSSES.items() if other.targets == 'inputs')
        )
    if loss.targets == 'labels' and len(outputs.shape) != 2:
        raise ValueError(
            f'config.loss={config.get("loss")!r} needs class logits, got outputs of shape {outputs.shape[1:]}'
        )
    # The monitor must be a metric of this task also while early stopping is off: turning it on must not fail later.
    monitors = [f'{prefix}{name}' for prefix in early_stopping_lib.PREFIXES for name in loss.metric_names]
    lookup(dict.fromkeys(monitors), checked.monitor, 'config.early_stopping.monitor (a metric of this task)')
    return task, train.as_hparams(defaults)


def member_hparams(defaults: Mapping[str, jax.Array], overrides: Mapping[str, float]) -> dict[str, jax.Array]:
    """`defaults` with some hyper-parameters changed; ValueError naming a path that is not sweepable here."""
    for path, value in overrides.items():
        if path not in defaults:
            raise ValueError(
                f'cannot sweep {path!r}: it is not a hyper-parameter of this task; sweepable: '
                f'{", ".join(defaults) or "none"}'
            )
        _check_number(path, value)
    return {**defaults, **train.as_hparams(overrides)}
