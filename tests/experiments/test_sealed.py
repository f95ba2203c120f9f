"""The sealed-test check covers every experiment: each experiments/NAME.py has tests/experiments/test_NAME.py, and
that file runs `sealed('NAME')` (conftest.py), so `--dist loadfile` runs the check in the worker that already holds
the experiment's :quick run. So does the results protocol's check, `protocol('NAME')`, for every experiment but the
ones listed in NOT_UNDER_THE_PROTOCOL: a ratchet, which fails when one is converted and not taken off the list, or
loses its check."""

import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXPERIMENTS = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'experiments')) if name[0] != '_')


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_every_experiment_has_a_test_file_that_runs_its_sealed_check(name):
    path = os.path.join(HERE, f'test_{name}.py')
    assert os.path.exists(path), f'experiments/{name}.py has no tests/experiments/test_{name}.py'
    with open(path) as f:
        source = f.read()
    assert re.search(rf"^    sealed\('{name}'\)$", source, re.M), f'test_{name}.py does not run sealed({name!r})'


# The benchmark measures speed and claims nothing; activation_cost times (its claims pair rounds of one process, not
# seeds, and it chooses nothing).
NOT_UNDER_THE_PROTOCOL = {'benchmark', 'activation_cost'}


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_every_experiment_but_the_listed_runs_the_results_protocols_check(name):
    with open(os.path.join(HERE, f'test_{name}.py')) as f:
        checked = bool(re.search(rf"^    protocol\('{name}'(, seeds=\d+)?\)", f.read(), re.M))
    assert checked != (name in NOT_UNDER_THE_PROTOCOL), (
        f'{name}: runs protocol({name!r}), so take it off NOT_UNDER_THE_PROTOCOL'
        if checked
        else f'test_{name}.py does not run protocol({name!r})'
    )
