"""experiments/overfitting.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest


@pytest.mark.slow
def test_overfitting_quick_chooses_strengths_on_validation_and_reports_every_variant(quick):
    _, results, workdir = quick('overfitting')
    summary, sweeps, chosen = results['summary'], results['sweeps'], results['chosen_strengths']
    variants = ('none', 'l2', 'l1', 'decay', 'dropout', 'dropout_maxnorm', 'early_stopping', 'combined', 'best')
    assert set(summary) == {f'{kind}_{v}' for v in variants for kind in ('test_accuracy', 'gap')} | {
        'mc_dropout_test_accuracy_dropout',
        'mc_dropout_test_accuracy_dropout_maxnorm',
        'best_variant',
    }
    assert 0.1 < summary['mc_dropout_test_accuracy_dropout'] <= 1
    # The chosen L2 strength is the candidate whose seeds have the best mean best-validation accuracy.
    by_strength = {}
    for run in sweeps['l2_300'].values():
        best = max(row['val_accuracy'] for row in run['history'])
        by_strength.setdefault(run['hparams']['penalties[0].kernel_l2'], []).append(best)
    assert chosen['l2_300'] == max(by_strength, key=lambda s: np.mean(by_strength[s]))
    # The reported test accuracy and gap are the chosen strength's, mean over seeds.
    kept = [run for run in sweeps['l2_300'].values() if run['hparams']['penalties[0].kernel_l2'] == chosen['l2_300']]
    assert summary['test_accuracy_l2'] == pytest.approx(np.mean([run['test']['accuracy'] for run in kept]))
    assert summary['gap_l2'] == pytest.approx(
        np.mean([run['train_accuracy_eval'] - run['test']['accuracy'] for run in kept])
    )
    # `combined` chooses its L2 strength, none included, on validation too; `best` is the variant whose chosen
    # members have the best mean best-validation accuracy, and its numbers are that variant's.
    assert {run['hparams']['penalties[0].kernel_l2'] for run in sweeps['combined_300'].values()} == {0.0, 1e-4, 0.1}
    assert chosen['combined_300'] in (0.0, 1e-4, 0.1)
    scores = {}
    for variant in variants[:-1]:
        kept = [run for run in sweeps[f'{variant}_300'].values()
                if chosen[f'{variant}_300'] is None or chosen[f'{variant}_300'] in run['hparams'].values()]  # fmt: skip
        scores[variant] = np.mean([max(row['val_accuracy'] for row in run['history']) for run in kept])
    assert summary['best_variant'] == max(scores, key=scores.get)
    best = summary['best_variant']
    assert (summary['test_accuracy_best'], summary['gap_best']) == (
        summary[f'test_accuracy_{best}'],
        summary[f'gap_{best}'],
    )
    assert (workdir / 'test_accuracy.png').stat().st_size > 0


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('overfitting')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('overfitting')
