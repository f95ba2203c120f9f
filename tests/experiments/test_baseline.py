"""experiments/baseline.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import pytest


@pytest.mark.slow
def test_baseline_quick_reports_the_refit_runs_test_accuracy(quick):
    config, results, workdir = quick('baseline')
    summary, runs = results['summary'], results['runs']
    assert set(runs) == {'baseline', 'refit'}
    refit = [run['test']['accuracy'] for run in runs['refit'].values()]
    without = [run['test']['accuracy'] for run in runs['baseline'].values()]
    # The headline is the refit's test accuracy (Keras trains on train + validation); the validation run's is apart.
    assert summary['test_accuracy'] == pytest.approx(sum(refit) / len(refit))
    assert summary['test_accuracy_without_refit'] == pytest.approx(sum(without) / len(without))
    assert summary['test_accuracy_min'] <= summary['test_accuracy'] <= summary['test_accuracy_max']
    # The refit trains on the validation images too, so it sees more examples an epoch and has no validation curve.
    for run in runs['refit'].values():
        assert not any(key.startswith('val_') for key in run['history'][-1])
    best = [max(row['val_accuracy'] for row in run['history']) for run in runs['baseline'].values()]
    assert summary['best_val_accuracy'] == pytest.approx(sum(best) / len(best))
    assert (workdir / 'report.md').read_text().count('Keras reports 0.9840') == 1
    # Its claim: the reported test accuracy against Keras's, over the seeds; one seed gives no interval.
    (claim,) = results['claims']
    assert claim['variants'] == ['refit', 'Keras (published)'] and claim['seeds'] == len(config.seeds) == 1
    assert claim['value'] == pytest.approx(summary['test_accuracy'] - 0.9840)
    assert claim['interval'] == [None, None] and claim['verdict'] == 'inconclusive'
    assert results['choices'] == [] and not set(results['seeds']) & set(results['config']['development_seeds'])


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('baseline')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('baseline')
