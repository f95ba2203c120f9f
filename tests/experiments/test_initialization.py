"""experiments/initialization.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest


@pytest.mark.slow
def test_initialization_quick_reports_every_headline_and_the_inits_really_differ(quick):
    _, results, workdir = quick('initialization')
    summary, runs, at_init = results['summary'], results['runs'], results['init_diagnostics']
    expected = {f'{init}_accuracy_{when}' for init in ('uniform', 'glorot_normal') for when in ('epoch_1', 'final')}
    expected |= {f'deep_{net}_{init}_accuracy' for net in ('relu', 'tanh') for init in ('he_normal', 'glorot_normal',
                                                                                      'uniform')}  # fmt: skip
    assert expected | {'uniform_accuracy_epoch_2'} <= set(summary)
    # The epoch headlines are the evaluation hook's test accuracy; the last one is the final test evaluation.
    shallow = runs['shallow_uniform'].values()
    assert summary['uniform_accuracy_epoch_1'] == pytest.approx(
        np.mean([r['history'][0]['test_accuracy'] for r in shallow])
    )
    for run in shallow:
        assert run['history'][-1]['test_accuracy'] == pytest.approx(run['test']['accuracy'])
    # Each variant initialises with its own init: at init, the deep ReLU net's last-layer pre-activation variance
    # is largest with He and smallest with U(-0.05, 0.05), by orders of magnitude (variance ~25x smaller a layer).
    last = {init: np.mean(np.asarray(at_init[f'deep_relu_{init}']['preactivation_variance'])[:, -1])
            for init in ('he_normal', 'glorot_normal', 'uniform')}  # fmt: skip
    assert last['he_normal'] > last['glorot_normal'] > 100 * last['uniform']
    assert (workdir / 'deep_nets.png').stat().st_size > 0


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('initialization')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('initialization')


@pytest.mark.slow
def test_every_deep_init_chooses_its_rate_from_the_same_grid_on_validation(quick):
    config, results, _ = quick('initialization')
    choices = {choice['choice']: choice for choice in results['choices']}
    for part in ('deep_relu', 'deep_tanh'):
        for init in config[part].inits:
            choice = choices[f'{part}_{init}']
            assert choice['metric'] == 'val_accuracy' and [rate for rate, _ in choice['values']] == list(
                config[part].learning_rates
            )
            kept = results['runs'][f'{part}_{init}'].values()
            assert {run['hparams']['optimizer.learning_rate'] for run in kept} == {choice['chosen']}
            assert results['summary'][f'{part}_{init}_learning_rate'] == choice['chosen']
