"""experiments/growth.py: its :quick run (shared with the sealed-test check) measures each seed's time to the target
from the curves it recorded, grows each member on its own, and states its claims under the results protocol."""

import numpy as np
import pytest


def _epochs_to_target(accuracies, window, target):
    """By hand: the trailing mean over `window` epochs, and the first epoch it reaches the target, interpolated."""
    smoothed = [np.mean(accuracies[max(0, i - window + 1) : i + 1]) for i in range(len(accuracies))]
    for i, value in enumerate(smoothed):
        if value >= target:
            return 1.0 if i == 0 else i + (target - smoothed[i - 1]) / (value - smoothed[i - 1])
    return float('nan')


def _seconds_at(history, epochs):
    """By hand: the program's seconds (epochs, compiles, growth) up to a fractional epoch count."""
    totals = np.cumsum([row['seconds'] + row['compile_seconds'] + row.get('growth_seconds', 0.0) for row in history])
    whole = int(epochs)
    if whole == epochs:
        return totals[whole - 1]
    return totals[whole - 1] + (epochs - whole) * (totals[whole] - totals[whole - 1])


@pytest.mark.slow
def test_each_seeds_time_ratio_is_its_time_to_the_smoothed_test_target_over_the_fixed_nets(quick):
    config, results, _ = quick('growth')
    summary, runs = results['summary'], results['runs']
    seconds = {}
    for variant in ['fixed', *config.strategies]:
        for run in runs[variant].values():
            epochs = _epochs_to_target(
                [row['test_accuracy'] for row in run['history']], config.smoothing, config.target
            )
            seconds[variant, run['seed']] = _seconds_at(run['history'], epochs) if np.isfinite(epochs) else np.nan
    reached_any = False
    for strategy in config.strategies:
        ratios = [seconds[strategy, seed] / seconds['fixed', seed] for seed in config.seeds]
        reached_any |= bool(np.all(np.isfinite(ratios)))
        if not np.all(np.isfinite(ratios)):  # a seed that never reached the target: no ratio (NaN, written null)
            assert summary[f'time_ratio_{strategy}'] is None, strategy
        else:
            np.testing.assert_allclose(summary[f'time_ratio_{strategy}'], np.mean(ratios), rtol=1e-9, err_msg=strategy)
            assert summary[f'time_ratio_low_{strategy}'] < np.mean(ratios) < summary[f'time_ratio_high_{strategy}']
        assert summary[f'test_accuracy_{strategy}'] == pytest.approx(
            np.mean([run['test']['accuracy'] for run in runs[strategy].values()])
        )
    assert reached_any  # :quick's target is reached, so the ratios are not all NaN


@pytest.mark.slow
def test_each_member_grows_by_its_units_and_the_function_preserving_ones_do_not_jump(quick):
    config, results, _ = quick('growth')
    growth, runs = config.growth, results['runs']
    full = config.model.hidden_widths[growth.layer]
    for strategy in config.strategies:
        for run in runs[strategy].values():
            history = run['history']
            added = [row['units_added'] for row in history]
            assert any(added), strategy  # :quick grows at every epoch's check (tolerance 10)
            widths = [row['width'] for row in history]
            assert widths[0] == growth.start_width
            for before, after, n in zip(widths, widths[1:], added):
                assert after == before + n and after <= full, strategy
    for strategy in ('zero_outgoing', 'net2net'):
        assert results['summary'][f'largest_loss_jump_{strategy}'] <= 1e-4, strategy


@pytest.mark.slow
def test_the_fixed_net_and_the_growing_nets_rates_are_chosen_on_validation(quick):
    config, results, _ = quick('growth')
    choices = {entry['choice']: entry for entry in results['choices']}
    assert {'fixed net schedule', 'growing net rate', 'best strategy'} <= set(choices)
    rates = dict(map(tuple, choices['growing net rate']['values']))
    assert set(rates) == set(config.learning_rates)
    assert results['summary']['growth_learning_rate'] == choices['growing net rate']['chosen']
    assert results['summary']['fixed_schedule'] == choices['fixed net schedule']['chosen']


@pytest.mark.slow
def test_growth_is_under_the_results_protocol(protocol):
    protocol('growth', seeds=10)


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('growth')


def test_the_ratio_figure_draws_the_tolerance_curve_without_the_tuning_strategy_among_the_strategies(tmp_path):
    """A config whose strategies leave out the tuning strategy (as the kill test's may) still gets its figure: the
    tolerance curve then has only its tolerance_* variants (it once looked up the missing variant and failed the run
    after training)."""
    from experiments import growth

    config = growth.get_config('quick')
    config.strategies, config.tolerances = ('net2net',), (1.0, 20.0)
    variants = ['net2net', 'zero_outgoing_tolerance_1', 'zero_outgoing_tolerance_20']
    summary = {
        f'{name}_ratio{end}_{variant}': 1.5
        for name in ('flops', 'time')
        for end in ('', '_low', '_high')
        for variant in variants
    }
    path = growth.plot_ratios(str(tmp_path / 'ratios.png'), config, summary, variants)
    assert (tmp_path / 'ratios.png').stat().st_size > 0 and path.endswith('ratios.png')
