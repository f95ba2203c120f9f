"""The config validator of every experiment: random bad values are refused with one line naming the field, random
good ones are accepted, and every field has a check (hypothesis)."""

import copy
import dataclasses
import glob
import importlib
import math
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nets import optimizers, validation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(
    os.path.splitext(os.path.basename(path))[0]
    for path in glob.glob(os.path.join(REPO, 'experiments', '*.py'))
    if not path.endswith('__init__.py')
)
# The task schema's own parts, which nets.tasks.build checks as a whole (tests/test_tasks.py).
SCHEMA_PARTS = ('penalties', 'transforms', 'schedule', 'early_stopping')
# Fields whose values are read together with others (parallel tuples, shapes that must fit the data): a good value
# for them alone is not defined by the field, so they are fuzzed with bad values only.
COUPLED = (
    'batch_sizes',
    'epochs_by_size',
    'passes',
    'labels',
    'train_sizes',
    'validation_size',
    'batch_size',
    'train_limit',
    'num_train',
    'unit',
    'layer',
    'batch_norm_layers',
    'start_width',
    'hidden_widths',
    'sample_size',
    'probe_size',
    'saliency_examples',
    'epoch_size',
    'neuron_widths',
    'group_width',
    'parameter_budget',
    'ticket_level',
    'features',
    'true_weights',
    'num_classes',
    'ridge_grid',
    'sgd',
    'momentum',
    'adam',
)  # fmt: skip  (the last: ranges, (low, high, count))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def configs():
    """(experiment, arg, its config as plain dicts, its CONFIG_RULES) for the full and the quick config."""
    found = []
    for name in EXPERIMENTS:
        module = importlib.import_module(f'experiments.{name}')
        for arg in (None, 'quick'):
            found.append((name, arg, module.get_config(arg).to_dict(), getattr(module, 'CONFIG_RULES', None)))
    return found


CONFIGS = configs()
CHECKS = {name: getattr(importlib.import_module(f'experiments.{name}'), 'CONFIG_CHECKS', ()) for name in EXPERIMENTS}


def leaves(config, prefix=''):
    for key, value in config.items():
        if isinstance(value, dict) and value and key != 'early_stopping':
            yield from leaves(value, f'{prefix}{key}.')
        elif key not in SCHEMA_PARTS:
            yield f'{prefix}{key}', value


FIELDS = [(index, path, value) for index, (_, _, config, _) in enumerate(CONFIGS) for path, value in leaves(config)]


def with_value(config, path, value):
    changed = copy.deepcopy(config)
    node = changed
    *parents, last = path.split('.')
    for key in parents:
        node = node[key]
    node[last] = value
    return changed


def bad_values(path, default):
    """Values no field of this kind may hold, decided by the default's type alone (not by the validator)."""
    strange = st.sampled_from([float('nan'), float('inf'), -float('inf')])
    garbage = st.text(min_size=1, max_size=8).map(lambda text: f'zz_{text}')
    if isinstance(default, bool):
        return st.one_of(st.integers(2, 5), garbage)
    if isinstance(default, int):  # counts, seeds, sizes: all >= 0
        return st.one_of(st.integers(max_value=-1), strange, garbage)
    if isinstance(default, float):  # rates, strengths, scales: all >= 0 and finite
        return st.one_of(st.floats(max_value=-1e-6, allow_nan=False), strange, garbage)
    if isinstance(default, str):
        return garbage.filter(lambda text: text != default)
    if isinstance(default, (list, tuple)):
        inner = next((item for item in default), None)
        if isinstance(inner, str):
            bad = garbage
        elif isinstance(inner, (list, tuple)):
            bad = st.tuples(strange)
        else:
            bad = strange
        return st.tuples(bad, st.integers(0, len(default))).map(
            lambda pair: tuple(default[: pair[1]]) + (pair[0],) + tuple(default[pair[1] :])
        )
    # None: a typed placeholder (train_limit, batch_norm, init_std, ...).
    return st.one_of(st.integers(max_value=-1), strange, garbage)


def good_values(default):
    """Values that stay valid for any field of this kind: the default scaled towards zero, or a permutation."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(default, default + 3)
    if isinstance(default, float):
        return st.floats(0.25, 1.0).map(lambda factor: default * factor if default > 0 else default)
    if isinstance(default, (list, tuple)) and default:
        return st.permutations(list(default)).map(tuple)
    return st.just(default)


@pytest.mark.parametrize('name,arg,config,rules', CONFIGS, ids=[f'{c[0]}:{c[1] or "full"}' for c in CONFIGS])
def test_every_experiments_config_passes_and_every_field_has_a_check(name, arg, config, rules):
    validation.check(config, rules, checks=CHECKS[name])
    merged = {**validation.RULES, **(rules or {})}
    for path, _ in leaves(config):
        assert validation._rule_for(path, merged) is not None, f'{name}: config.{path} has no check'


def test_a_field_without_a_check_is_refused_by_name():
    config = with_value(CONFIGS[0][2], 'brand_new_field', 3)
    with pytest.raises(ValueError, match=r'config\.brand_new_field has no check'):
        validation.check(config, CONFIGS[0][3])


def _refused_in_one_line(config, rules, path):
    with pytest.raises(ValueError) as error:
        validation.check(config, rules)
    message = str(error.value)
    assert '\n' not in message, message
    # The line names the field (a tuple's item as PATH[i]).
    assert f'config.{path}' in message, (path, message)


@SETTINGS
@given(data=st.data())
def test_random_bad_values_are_refused_in_one_line_naming_the_field(data):
    index, path, default = data.draw(st.sampled_from(FIELDS))
    _, _, config, rules = CONFIGS[index]
    value = data.draw(bad_values(path, default))
    _refused_in_one_line(with_value(config, path, value), rules, path)


def applies(config, path):
    """False for an optimizer's constant or a schedule's field that the named optimizer or schedule does not use:
    nets.optimizers holds such a field at its default (tests/test_tasks.py)."""
    *parents, field = path.split('.')
    node = config
    for key in parents:
        node = node[key]
    for registry, shared in ((optimizers.OPTIMIZERS, optimizers.OPTIMIZER_FIELDS),
                             (optimizers.SCHEDULES, optimizers.SCHEDULE_FIELDS)):  # fmt: skip
        if node.get('name') in registry and field in shared:
            return field in registry[node['name']].fields
    return True


@SETTINGS
@given(data=st.data())
def test_random_good_values_are_accepted(data):
    index, path, default = data.draw(
        st.sampled_from(
            [(i, p, d) for i, p, d in FIELDS if p.split('.')[-1] not in COUPLED and applies(CONFIGS[i][2], p)]
        )
    )
    _, _, config, rules = CONFIGS[index]
    value = data.draw(good_values(default))
    validation.check(with_value(config, path, value), rules)


@pytest.mark.reliability
@pytest.mark.parametrize(
    'path,value,words',
    [
        ('optimizer.learning_rate', 0.0, '> 0'),
        ('optimizer.learning_rate', math.nan, '> 0'),
        ('epochs', 0, '>= 1'),
        ('seeds', (), 'at least one'),
        ('seeds', (1, 1), 'twice'),
        ('model.hidden_widths', (512, 0), '>= 1'),
        ('model.batch_norm', 'middle', "'before', 'after'"),
        ('batch_size', 50_001, 'larger than the 50000 training examples'),
        ('model.activation', 'swish', "'relu'"),
        ('model.negative_slope', 1.0, '[0, 1)'),
        # Issue 25's silent wrong values: PRNGKey keeps 32 bits (2**32 is seed 0 again), float32 flushes 1e-320
        # to 0 and cannot hold 1e39, and a strength at or below 0 does nothing or the opposite.
        ('seeds', (100, 2**32), 'from 0 to 4294967295'),
        ('seeds', (2**64,), 'from 0 to 4294967295'),
        ('split_seed', 2**32, 'from 0 to 4294967295'),
        ('optimizer.learning_rate', 1e-320, 'that float32 holds'),
        ('optimizer.learning_rate', 1e39, 'that float32 holds'),
        ('optimizer.transforms', ({'name': 'add_decayed_weights', 'weight_decay': -1.0},), 'weight_decay must be a'),
        ('l2', (0.0, -1e-6), 'l2[1] must be a finite number >= 0'),  # a grid of strengths: 0 is off, not below
        ('optimizer.transforms', ({'name': 'max_norm', 'max_norm': -3.0},), 'max_norm must be a finite number > 0'),
        ('optimizer.transforms', ({'name': 'clip_by_global_norm', 'max_norm': 0.0},), 'max_norm must be'),
        ('penalties', ({'kernel_l2': -0.1},), 'kernel_l2 must be a finite number >= 0'),
        ('penalties', ({'bias_l1': 1e-320},), 'bias_l1 must be 0 or at least 1.2e-38'),
        ('model.name', 'autoencoder', 'reconstructs its input (784 outputs, no classes)'),
    ],
)
def test_the_issues_bad_inputs_name_what_is_allowed(path, value, words):
    """Refused in one line that names the field and what it may hold; the good neighbours pass (below)."""
    from experiments import baseline

    with pytest.raises(ValueError, match=r'^config\.') as error:
        validation.check(with_value(baseline.get_config().to_dict(), path, value), baseline.CONFIG_RULES)
    assert words in str(error.value) and '\n' not in str(error.value)


@pytest.mark.reliability
def test_an_early_stopping_monitor_that_is_no_metric_is_refused_also_while_early_stopping_is_off():
    from experiments import baseline

    config = with_value(baseline.get_config().to_dict(), 'early_stopping', {'enabled': False, 'monitor': 'val_typo'})
    with pytest.raises(ValueError, match=r"config\.early_stopping\.monitor .*'val_typo'; allowed: train_loss"):
        validation.check(config, baseline.CONFIG_RULES)


@pytest.mark.parametrize(
    'path,value',
    [
        ('seeds', (100, 2**32 - 1)),
        ('optimizer.learning_rate', 1.2e-38),
        ('optimizer.transforms', ({'name': 'clip_by_global_norm', 'max_norm': 1.0},)),
        ('penalties', ({'kernel_l2': 0.0},)),  # a sweep's unpenalised control member
        ('l1', (0.0, 1e-7, 1e-6)),  # a grid of strengths that starts at off
        ('optimizer.transforms', ({'name': 'add_decayed_weights', 'weight_decay': 0.0},)),  # a sweep's placeholder
    ],
)
def test_the_edges_of_the_ranges_pass(path, value):
    from experiments import baseline

    validation.check(with_value(baseline.get_config().to_dict(), path, value), baseline.CONFIG_RULES)


def test_a_sub_task_is_built_whole_and_named_by_its_path():
    """The fields' own checks pass, but the task does not fit together: tasks.build refuses, under the sub-path."""
    index = next(i for i, c in enumerate(CONFIGS) if c[0] == 'activations' and c[1] == 'quick')
    _, _, config, rules = CONFIGS[index]
    config = with_value(config, 'dead.model.batch_norm_layers', (7,))
    with pytest.raises(ValueError, match=r'config\.dead\.model'):
        validation.check(config, rules)


def sub_configs(node, path=''):
    """(path, object) of every sub-config of a ConfigDict, at any depth."""
    for key in node.keys():
        value = node[key]
        if hasattr(value, 'keys'):
            yield f'{path}{key}', value
            yield from sub_configs(value, f'{path}{key}.')


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_no_two_fields_of_a_config_are_one_object(name):
    """Setting --config.a.x must never set --config.b.x too: no sub-config is shared between two paths."""
    module = importlib.import_module(f'experiments.{name}')
    for arg in (None, 'quick'):
        seen = {}
        for path, value in sub_configs(module.get_config(arg)):
            assert id(value) not in seen, f'{name}: config.{path} is config.{seen[id(value)]}'
            seen[id(value)] = path


@pytest.mark.parametrize(
    'name,path,value,words',
    [
        ('pruning', 'neuron_widths', ((16, 8), (24, 12)), 'from 1 to that of the cut before'),
        ('pruning', 'neuron_widths', ((16,),), 'one width per hidden layer'),
        ('pruning', 'compared_level', 0.3, 'one of keep_levels'),
        ('pruning', 'keep_levels', (0.1, 0.2, 0.5), 'fall from rung to rung'),
        ('pretraining', 'hidden_widths', (), 'at least one hidden layer'),
        ('pretraining', 'units.group_width', 3, 'a divisor of the first hidden layer (32 units)'),
        ('growth', 'growth.layer', 1, 'the index of a hidden layer of (16,) (0 to 0)'),
        ('growth', 'growth.start_width', 16, "below the fixed net's width 16"),
        ('pruning', 'saliency_examples', 301, 'at most validation_size (300)'),
        ('pruning', 'rank_examples', 301, 'at most validation_size (300)'),
        ('pruning', 'rank_members', 3, 'at most the 2 seeds'),
        ('pretraining', 'labels', ('105',), 'a multiple of the 10 classes'),
        ('pretraining', 'labels', ('3000',), 'at most the 2000 training images'),
        ('pretraining', 'passes', (20, 20), 'one entry per entry of labels'),
        ('overfitting', 'epochs_by_size', (3, 4), 'one epoch count per train size (300,)'),
        ('overfitting', 'batch_size', 301, 'at most the smallest of train_sizes (300)'),
    ],
)
def test_fields_read_together_are_refused_together_in_one_line(name, path, value, words):
    module = importlib.import_module(f'experiments.{name}')
    config = with_value(module.get_config('quick').to_dict(), path, value)
    with pytest.raises(ValueError, match=rf'^config\.{re.escape(path)}(\[\d+\])? ') as error:
        validation.check(config, getattr(module, 'CONFIG_RULES', None), checks=module.CONFIG_CHECKS)
    assert words in str(error.value) and '\n' not in str(error.value)


@pytest.mark.parametrize('path', ['probe_size', 'trained.sample_size'])
def test_a_sample_drawn_from_the_training_split_is_at_most_its_size(path):
    from experiments import growth

    config = with_value(growth.get_config('quick').to_dict(), path, 2001)
    with pytest.raises(ValueError, match=rf'^config\.{re.escape(path)}=2001 is larger than the 2000 training'):
        validation.check(config, growth.CONFIG_RULES)


def test_the_shared_checks_know_no_topic_and_no_experiments_own_field():
    """nets.validation declares the shared fields (data, seeds, the task schema, common sweeps); a field that one
    experiment alone has is declared in that experiment's CONFIG_RULES."""
    import ast

    tree = ast.parse(open(validation.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not imported & {'growth', 'pruning', 'pretraining', 'regularizers', 'diagnostics'}, imported
    users = {}
    for name, _, config, _ in CONFIGS:
        for path, _ in leaves(config):
            for start in range(len(path.split('.'))):
                key = '.'.join(path.split('.')[start:])
                if key in validation.RULES:
                    users.setdefault(key, set()).add(name)
                    break
    from nets import models, tasks

    model_fields = {f.name for spec in models.MODELS.values() for f in dataclasses.fields(spec.module)}
    task_schema = {*model_fields, *optimizers.OPTIMIZER_FIELDS, *optimizers.SCHEDULE_FIELDS, *tasks.FIELDS, 'order'}
    task_schema |= {'model.name', 'optimizer.name', 'schedule.name', 'learning_rate', 'transforms', 'schedule'}
    own = {key: names for key, names in users.items() if len(names) == 1 and key not in task_schema}
    assert not own, f'fields of one experiment in nets.validation.RULES: {own}'


@pytest.mark.reliability
def test_a_confirmation_run_refuses_a_development_seed_before_any_data_loads():
    from experiments import baseline

    config = baseline.get_config().to_dict()
    validation.check(config, baseline.CONFIG_RULES)  # 100..104 against development seeds 0, 1, 2
    with pytest.raises(ValueError) as error:
        validation.check({**config, 'seeds': (100, 2)}, baseline.CONFIG_RULES)
    assert str(error.value) == (
        'config.seeds must be seeds that are not development_seeds (0, 1, 2) (a confirmation run uses fresh ones; 2 '
        'is reused), got (100, 2)'
    )
    validation.check({**config, 'seeds': (0,), 'development_seeds': ()}, baseline.CONFIG_RULES)  # a smoke run
