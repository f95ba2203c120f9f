"""The sealed-test check covers every experiment: each experiments/NAME.py has tests/experiments/test_NAME.py, and
that file runs `sealed('NAME')` (conftest.py), so `--dist loadfile` runs the check in the worker that already holds
the experiment's :quick run."""

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
