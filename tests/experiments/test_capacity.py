"""experiments/capacity.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest

from experiments import capacity


@pytest.fixture
def capacity_quick(quick):
    config, results, workdir = quick('capacity')
    return config, results['summary'], results, workdir


@pytest.mark.slow
def test_approximation_error_is_the_grids_mse_and_falls_with_width(capacity_quick):
    config, summary, results, workdir = capacity_quick
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
def test_every_depth_gets_the_budget_and_its_headlines(capacity_quick):
    config, summary, results, workdir = capacity_quick
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


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('capacity')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('capacity')
