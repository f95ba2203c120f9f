"""experiments/activations.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import pytest


@pytest.mark.slow
def test_activations_quick_counts_dead_units_and_the_shallow_spread(quick):
    _, results, workdir = quick('activations')
    summary, runs = results['summary'], results['runs']
    activations = ('sigmoid', 'tanh', 'relu', 'leaky_relu')
    assert {f'{a}_accuracy' for a in activations} | {'dead_fraction_relu', 'dead_fraction_leaky_relu'} <= set(summary)
    shallow = [summary[f'shallow_{a}_accuracy'] for a in activations]
    assert summary['shallow_spread'] == pytest.approx(max(shallow) - min(shallow))
    # A leaky unit's output is never exactly 0, so none is dead, though some may be inactive (z <= 0 everywhere).
    assert summary['dead_fraction_leaky_relu'] == 0.0
    assert 0 <= summary['dead_fraction_relu'] <= summary['inactive_fraction_relu'] <= 1
    # They are read at the highest rate where every member of both activations kept a finite loss.
    members = [run for a in ('relu', 'leaky_relu') for run in runs[f'dead_{a}'].values()]
    finite = [rate for rate in results['config']['dead']['learning_rates']
              if all(run['history'][-1]['train_loss'] is not None for run in members
                     if run['hparams']['optimizer.learning_rate'] == rate)]  # fmt: skip
    assert summary['dead_learning_rate'] == max(finite)
    # The dead part's members differ in their learning rate only, and each reports its own diagnostics.
    rates = {run['hparams']['optimizer.learning_rate'] for run in runs['dead_relu'].values()}
    assert len(rates) == len(results['config']['dead']['learning_rates'])
    assert all(
        run['final_diagnostics']['dead_fraction'] == run['history'][-1]['dead_fraction']
        for run in runs['dead_relu'].values()
    )


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('activations')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('activations')
