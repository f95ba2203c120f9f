"""experiments/growth.py: its :quick run (shared with the sealed-test check) measures every strategy against the
fixed net's validation target, from the runs it recorded."""

import numpy as np
import pytest


@pytest.mark.slow
def test_each_strategy_reaches_the_fixed_nets_validation_target_when_its_runs_say_so(quick):
    config, results, _ = quick('growth')
    summary, runs = results['summary'], results['runs']
    mean_val = lambda variant: np.mean(
        [[row['val_accuracy'] for row in run['history']] for run in runs[variant].values()], 0
    )
    target = mean_val('fixed')[-1]
    assert summary['fixed_final_val_accuracy'] == pytest.approx(target)
    for strategy in config.strategies:
        reached = [epoch + 1 for epoch, value in enumerate(mean_val(strategy)) if value >= target]
        assert summary[f'epochs_to_target_{strategy}'] == (reached[0] if reached else None), strategy
        assert summary[f'test_accuracy_{strategy}'] == pytest.approx(
            np.mean([run['test']['accuracy'] for run in runs[strategy].values()])
        )


@pytest.mark.slow
def test_every_strategy_grows_by_its_units_and_the_function_preserving_ones_do_not_jump(quick):
    config, results, _ = quick('growth')
    summary, growth = results['summary'], config.growth
    for strategy in config.strategies:
        events = summary[f'growth_events_{strategy}']
        assert events >= 1, strategy  # :quick grows at every epoch's check (tolerance 10)
        expected = min(growth.start_width + events * growth.units_per_growth, config.model.hidden_widths[growth.layer])
        assert summary[f'final_width_{strategy}'] == expected, strategy
    preserving = [strategy for strategy in ('zero_outgoing', 'net2net') if strategy in config.strategies]
    assert preserving  # :quick runs net2net
    for strategy in preserving:
        assert summary[f'largest_loss_jump_{strategy}'] <= 1e-4, strategy


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('growth')
