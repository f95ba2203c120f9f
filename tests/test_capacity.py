"""The capacity experiment: parameter budgets that match the model, and headlines that are what the runs measured."""

import json

import jax
import numpy as np
import pytest

from experiments import capacity
from nets import models


@pytest.mark.parametrize('depth', [1, 2, 5])
def test_parameter_count_is_the_models_and_the_budget_width_is_the_largest_that_fits(depth):
    width = capacity.width_for_budget(50_000, depth)
    model = models.MLP(hidden_widths=(width,) * depth)
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 784), np.float32), train=False)['params']
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == capacity.parameter_count(784, width, depth, 10)
    assert capacity.parameter_count(784, width, depth, 10) <= 50_000 < capacity.parameter_count(784, width + 1,
                                                                                                depth, 10)  # fmt: skip


@pytest.fixture(scope='module')
def quick(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('capacity')
    config = capacity.get_config('quick')
    summary = capacity.run(config, str(workdir), data_dir=data_dir)
    return config, summary, json.loads((workdir / 'results.json').read_text()), workdir


@pytest.mark.slow
def test_approximation_error_is_the_grids_mse_and_falls_with_width(quick):
    config, summary, results, workdir = quick
    settings = config.approximation
    for function in settings.functions:
        for width in settings.widths:
            runs = results['runs'][f'{function}_width_{width}'].values()
            # The error is the final mean squared error on the evenly spaced grid, mean over seeds.
            assert summary[f'{function}_error_width_{width}'] == pytest.approx(
                np.mean([run['history'][-1]['val_mse'] for run in runs])
            )
    # |x| is a kink: one tanh unit cannot make it, a few dozen fit it closely.
    narrow, wide = min(settings.widths), max(settings.widths)
    assert summary[f'abs_error_width_{wide}'] < 0.2 * summary[f'abs_error_width_{narrow}']
    assert (workdir / 'approximation.png').stat().st_size > 0


@pytest.mark.slow
def test_every_depth_gets_the_budget_and_its_headlines(quick):
    config, summary, results, workdir = quick
    for depth in config.depths:
        width = summary[f'depth_{depth}_width']
        assert width == capacity.width_for_budget(config.parameter_budget, depth)
        assert results['architectures'][f'depth_{depth}']['parameters'] <= config.parameter_budget
        runs = list(results['runs'][f'depth_{depth}'].values())
        assert len(runs) == len(config.seeds)
        assert summary[f'depth_{depth}_test_accuracy'] == pytest.approx(np.mean([r['test']['accuracy'] for r in runs]))
        assert summary[f'depth_{depth}_epoch_1_val_accuracy'] == pytest.approx(
            np.mean([r['history'][0]['val_accuracy'] for r in runs])
        )
    assert (workdir / 'width_depth.png').stat().st_size > 0
