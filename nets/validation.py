"""Checks every field of an experiment's config before any data loads, and refuses a bad value with one line that
names the field, the value and what is allowed.

A field's rule is found by its name (the longest suffix of its path with one): `RULES` here declares the fields
`nets` reads or that several experiments share under one meaning (what runs and on what, the task schema of
`nets.tasks`, the common sweeps), and each experiment declares the fields only it has in its `CONFIG_RULES`, beside
its get_config, or declares each once, its default beside its rule, with `declare` (as experiments/pruning.py
does). A field with no rule is itself refused, so a new field cannot go unchecked. A plural holds several
(`learning_rates`), none twice: each becomes a member or a variant, and the results are keyed by it.
Every sub-config that is a task (it has `model` and `optimizer`) is also built by `nets.tasks.build`, which checks
the task schema against the input shape. No batch and no sample drawn from the training split (`probe_size`,
`sample_size`) may be larger than it, and an experiment's CONFIG_CHECKS read the fields that only make sense
together (a layer index against the widths, a label count against the classes).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from nets import activations, data as data_lib, initializers, losses, models, optimizers, orders, tasks
from nets.registry import fits_float32

Rule = Callable[[str, Any], None]


def refuse(path: str, value: Any, allowed: str) -> None:
    """The one-line refusal every check raises: the field, what is allowed, the value."""
    raise ValueError(f'config.{path} must be {allowed}, got {value!r}')


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, optional: bool = False, high: int | None = None) -> Rule:
    """An integer >= low, and <= high if given (or None when optional)."""
    allowed = f'an integer >= {low}' if high is None else f'an integer from {low} to {high}'
    allowed += ' or None' if optional else ''

    def rule(path: str, value: Any) -> None:
        if optional and value is None:
            return
        if not _is_int(value) or value < low or (high is not None and value > high):
            refuse(path, value, allowed)

    return rule


SEED_MAX = 2**32 - 1  # jax.random.PRNGKey(seed) keeps 32 bits: 2**32 would be seed 0 again
seed = integer(0, high=SEED_MAX)


def number(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite number in the interval from low to high (open or closed at each end)."""
    left, right = '(' if low_open else '[', ')' if high_open else ']'
    allowed = f'a finite number in {left}{low:g}, {high:g}{right}'
    if high == math.inf:
        allowed = f'a finite number {">" if low_open else ">="} {low:g}'

    def rule(path: str, value: Any) -> None:
        ok = _is_number(value)
        ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            refuse(path, value, allowed)
        if not fits_float32(value):
            refuse(path, value, f'{allowed} that float32 holds (in size 1.2e-38 to 3.4e38, or 0)')

    return rule


def positive(path: str, value: Any) -> None:
    """A finite number > 0."""
    number(0.0, low_open=True)(path, value)


def rate(path: str, value: Any) -> None:
    """A rate in [0, 1): dropout, momentum, masking noise."""
    number(0.0, 1.0, high_open=True)(path, value)


def fraction(path: str, value: Any) -> None:
    """A fraction in (0, 1]: a kept share, a subsample, a decay factor."""
    number(0.0, 1.0, low_open=True)(path, value)


def name_in(choices: Sequence[str] | Mapping[str, Any], *, optional: bool = False) -> Rule:
    """One of `choices` (or None / '' when optional)."""
    names = list(choices)

    def rule(path: str, value: Any) -> None:
        if optional and value in (None, ''):
            return
        if not isinstance(value, str) or value not in names:
            refuse(path, value, 'one of ' + ', '.join(map(repr, names)) + (' or empty' if optional else ''))

    return rule


def boolean(path: str, value: Any) -> None:
    """True or False."""
    if not isinstance(value, bool):
        refuse(path, value, 'True or False')


def several(each: Rule, *, distinct: bool = True, allow_empty: bool = False) -> Rule:
    """A tuple of values that each pass `each`; distinct (each becomes a member or a variant) unless told."""

    def rule(path: str, value: Any) -> None:
        if not isinstance(value, tuple) or (not value and not allow_empty):
            refuse(path, value, 'a tuple' + ('' if allow_empty else ' of at least one value'))
        for index, item in enumerate(value):
            each(f'{path}[{index}]', item)
        if distinct and len(set(value)) != len(value):
            repeated = next(item for item in value if value.count(item) > 1)
            raise ValueError(f'config.{path} names {repeated!r} twice; each value once, got {value!r}')

    return rule


def one_or_several(each: Rule) -> Rule:
    """One value or a tuple of distinct values."""
    return lambda path, value: (several(each) if isinstance(value, tuple) else each)(path, value)


def grid(path: str, value: Any) -> None:
    """(low, high, count): `count` >= 2 values from low to high."""
    if (
        not isinstance(value, tuple)
        or len(value) != 3
        or not all(_is_number(item) for item in value[:2])
        or not _is_int(value[2])
        or value[2] < 2
        or not value[0] < value[1]
    ):
        refuse(path, value, '(low, high, count) with finite low < high and an integer count >= 2')


count = integer(1)
counts = several(count, distinct=False)


def declare(fields: Mapping[str, Any], prefix: str = '') -> tuple[dict[str, Any], dict[str, Rule]]:
    """An experiment's own fields, each declared once as `name: (default, rule)`, and its sub-configs as `name: {...}`
    declared alike: returns their defaults (which its get_config sets) and their rules by path (its CONFIG_RULES),
    so that a field's check sits beside its default."""
    defaults, rules = {}, {}
    for name, declared in fields.items():
        if isinstance(declared, Mapping):
            defaults[name], inner = declare(declared, f'{prefix}{name}.')
            rules |= inner
        else:
            defaults[name], rules[prefix + name] = declared
    return defaults, rules


ignored = lambda path, value: None  # checked by nets.tasks.build with the whole task (schedule, early_stopping)


def entries(path: str, value: Any) -> None:
    """A tuple of dicts (penalties, transforms), whose fields nets.tasks.build checks with the whole task. On the
    command line each dict is a literal: `dict(...)` is no literal, so absl passes the whole value as a string."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(entry, Mapping) for entry in value):
        refuse(path, value, "a tuple of dicts, each written as a literal: ({'layers': '^dense_0$', 'kernel_l2': 0.1},)")


# The fields that nets reads, or that several experiments share under one meaning: what runs and on what, the task
# schema (nets.tasks) and the common sweeps. A field only one experiment has is declared in its CONFIG_RULES.
RULES: dict[str, Rule] = {
    # what runs and on what
    'dataset': name_in(data_lib.DATASETS),
    'seeds': several(seed),
    'development_seeds': several(seed, allow_empty=True),
    'problem_seed': seed,
    'validation_size': integer(0),
    **{name: integer(0, optional=True, high=SEED_MAX) for name in ('data_seed', 'split_seed')},  # None: the seeds'
    'train_limit': integer(1, optional=True),
    'test_limit': integer(1, optional=True),
    'shuffle': name_in(('shared', 'per_member')),
    **{name: count for name in ('epochs', 'batch_size', 'steps', 'checkpoint_every', 'probe_size', 'sweep_epochs')},
    'final_epochs': count,  # the epochs a claim's final number averages over (results.mean_of_last)
    **{name: count for name in ('num_train', 'num_validation', 'window')},
    'patience': integer(0),
    'noise': number(0.0),
    # common sweeps
    'learning_rates': several(positive),
    **{name: one_or_several(number(0.0)) for name in ('l1', 'l2')},  # a penalty's strengths; 0 is off
    'max_norm': one_or_several(positive),
    # the task schema: the model
    'model.name': name_in(models.MODELS),
    'hidden_widths': several(count, distinct=False, allow_empty=True),
    'num_classes': count,
    'activation': name_in(activations.ACTIVATIONS),
    'negative_slope': number(0.0, 1.0, high_open=True),  # a slope of 1 makes leaky ReLU the identity
    'kernel_init': name_in(initializers.INITIALIZERS),
    'init_std': lambda path, value: value is None or positive(path, value),
    'init_scale': number(0.0),
    **{name: rate for name in ('input_dropout', 'hidden_dropout')},
    'batch_norm': lambda path, value: name_in(('before', 'after'), optional=True)(path, value),
    'batch_norm_layers': lambda path, value: value is None or several(integer(0), allow_empty=True)(path, value),
    'batch_norm_epsilon': positive,
    'batch_norm_momentum': rate,
    **{name: boolean for name in ('batch_norm_scale', 'batch_norm_shift')},
    'tied_weights': boolean,
    # the task schema: the optimizer, its constants and its schedule (nets.tasks.optimizer_config lists them all)
    'optimizer.name': name_in(optimizers.OPTIMIZERS),
    'learning_rate': positive,
    **{name: rate for name in ('momentum', 'rho', 'b1', 'b2')},
    'epsilon': positive,
    'schedule.name': name_in(optimizers.SCHEDULES),
    'boundaries': lambda path, value: value is None or several(integer(1))(path, value),
    **{name: integer(1, optional=True) for name in ('transition_steps', 'decay_steps', 'warmup_steps')},
    'decay_rate': lambda path, value: value is None or positive(path, value),
    'staircase': boolean,
    'alpha': number(0.0, 1.0),
    'end_value': number(0.0),
    'factor': fraction,
    # the task schema: loss and order, and the parts that nets.tasks.build checks as a whole
    'loss': name_in(losses.LOSSES),
    'order': name_in(orders.ORDERS),
    **{name: entries for name in ('penalties', 'transforms')},
    **{name: ignored for name in ('schedule', 'early_stopping')},  # 'schedule': {}
}
TASK_FIELDS = ('loss', 'penalties', 'early_stopping', 'batch_size', 'order')


def _leaves(config: Mapping[str, Any], prefix: str = '') -> list[tuple[str, Any]]:
    """(path, value) of every field, descending into sub-configs but not into the task schema's own dicts."""
    found = []
    for key, value in config.items():
        path = f'{prefix}{key}'
        if isinstance(value, Mapping) and value and key != 'early_stopping':
            found += _leaves(value, f'{path}.')
        else:
            found.append((path, value))
    return found


def _rule_for(path: str, rules: Mapping[str, Rule]) -> Rule | None:
    parts = path.split('.')
    for start in range(len(parts)):  # the longest suffix with a rule: 'model.name' before 'name'
        rule = rules.get('.'.join(parts[start:]))
        if rule is not None:
            return rule
    return None


def _training_examples(config: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[int, str] | None:
    """How many examples a batch drawn inside `node` comes from, and where that number comes from."""
    if 'num_train' in node:
        return node['num_train'], 'num_train'
    if config.get('train_limit') is not None:
        return config['train_limit'], 'train_limit'
    dataset = config.get('dataset')
    if dataset in data_lib.TRAIN_EXAMPLES:
        available = data_lib.TRAIN_EXAMPLES[dataset] - config.get('validation_size', 0)
        return available, f"{dataset}'s {data_lib.TRAIN_EXAMPLES[dataset]} less validation_size"
    return None


def _check_batches(config: Mapping[str, Any], node: Mapping[str, Any], prefix: str) -> None:
    for key, value in node.items():
        if isinstance(value, Mapping):
            _check_batches(config, value, f'{prefix}{key}.')
        elif key in ('batch_size', 'batch_sizes', 'probe_size', 'sample_size'):
            available = _training_examples(config, node)
            sizes = value if isinstance(value, tuple) else (value,)
            if available is not None and max(sizes) > available[0]:
                raise ValueError(
                    f'config.{prefix}{key}={value!r} is larger than the {available[0]} training examples '
                    f'({available[1]}); a {"batch" if key.startswith("batch") else "sample"} must be at most that'
                )


def check(
    config: Any,
    rules: Mapping[str, Rule] | None = None,
    input_shape: Sequence[int] | None = None,
    checks: Sequence[Callable[[Mapping[str, Any]], None]] = (),
) -> None:
    """Refuses `config` with one line (ValueError) at its first bad field; `rules` adds the experiment's own, and
    `checks` (its CONFIG_CHECKS) read fields together (a layer index against the widths), after every field passed."""
    config = tasks.plain(config)
    rules = {**RULES, **(rules or {})}
    if config.get('validation_size', 0) and config.get('dataset') in data_lib.TRAIN_EXAMPLES:
        integer(0)('validation_size', config['validation_size'])
        if config['validation_size'] >= data_lib.TRAIN_EXAMPLES[config['dataset']]:
            refuse('validation_size', config['validation_size'], 'smaller than the training split')
    for path, value in _leaves(config):
        rule = _rule_for(path, rules)
        if rule is None:
            raise ValueError(f"config.{path} has no check; name what it may hold in the experiment's CONFIG_RULES")
        rule(path, value)
    _check_batches(config, config, '')
    _check_confirmation_seeds(config)
    if input_shape is None and config.get('dataset') in data_lib.DATASETS:
        input_shape = (math.prod(data_lib.image_shape(config['dataset'])),)
    for prefix, task in _tasks(config):
        merged = {**{name: config[name] for name in TASK_FIELDS if name in config}, **task}
        if input_shape is not None and 'batch_size' in merged:
            try:
                tasks.build(merged, input_shape)
            except ValueError as error:
                message = str(error)
                raise ValueError(message.replace('config.', f'config.{prefix}', 1) if prefix else message) from None
    for cross_check in checks:
        cross_check(config)


def _check_confirmation_seeds(config: Mapping[str, Any]) -> None:
    """A run's seeds confirm what was developed on others: none of them may be a development seed."""
    reused = sorted(set(config.get('seeds', ())) & set(config.get('development_seeds', ())))
    if reused:
        refuse(
            'seeds',
            config['seeds'],
            f'seeds that are not development_seeds {tuple(config["development_seeds"])} (a confirmation run uses fresh '
            f'ones; {reused[0]} is reused)',
        )


def _tasks(config: Mapping[str, Any], prefix: str = '') -> list[tuple[str, Mapping[str, Any]]]:
    """Every sub-config that describes a task (it has model and optimizer), with its path; a model with several
    `optimizers` (whose learning rates the experiment sweeps) is one task per optimizer."""
    found = []
    if 'model' in config:
        several = config.get('optimizers') if isinstance(config.get('optimizers'), Mapping) else {}
        for optimizer in [config['optimizer']] if 'optimizer' in config else several.values():
            # A config whose experiment sweeps the learning rate does not list one: any rate does for the check.
            found.append((prefix, {**config, 'optimizer': {'learning_rate': 1.0, **optimizer}}))
    for key, value in config.items():
        if isinstance(value, Mapping) and key not in ('model', 'optimizer', 'optimizers'):
            found += _tasks(value, f'{prefix}{key}.')
    return found
