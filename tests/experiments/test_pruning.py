"""experiments/pruning.py: its :quick run (shared with the sealed-test check) chooses on validation and reports what
its rungs measured."""

import numpy as np
import pytest


def _choice(results, what):
    return next(choice for choice in results['choices'] if choice['choice'] == what)


@pytest.mark.slow
def test_the_operating_points_are_the_most_compressed_rungs_within_the_dense_validation_error(quick):
    config, results, _ = quick('pruning')
    summary, ladders = results['summary'], results['ladders']
    dense_val = np.mean([run['history'][-1]['val_accuracy'] for run in results['runs']['dense'].values()])
    for criterion in config.criteria:
        kept, val, test = (np.mean(ladders[criterion][key], 0) for key in ('kept', 'val', 'test'))
        within = [i for i in range(len(kept)) if val[i] <= 1 - dense_val + 1e-6]
        expected = 1 / kept[max(within, key=lambda i: 1 / kept[i])] if within else 1.0
        assert summary[f'compression_at_dense_error_{criterion}'] == pytest.approx(expected, rel=1e-4)
        if within:  # the test error is read at the rung validation chose, and only there
            rung = max(within, key=lambda i: 1 / kept[i])
            assert summary[f'test_error_at_dense_error_{criterion}'] == pytest.approx(test[rung], rel=1e-5)
    # The best criterion is the one the recorded choice names, and its numbers are that criterion's.
    best = summary['best_criterion']
    assert _choice(results, 'criterion')['chosen'] == best and 'test' not in _choice(results, 'criterion')['metric']
    assert summary['compression_at_dense_error'] == summary[f'compression_at_dense_error_{best}']


@pytest.mark.slow
def test_the_dense_rate_is_chosen_by_the_development_seeds_and_the_control_trains_as_long_as_the_ladder(quick):
    config, results, _ = quick('pruning')
    runs = results['runs']
    assert {run['seed'] for run in runs['tune_dense'].values()} == set(config.development_seeds)
    assert sorted(run['seed'] for run in runs['dense'].values()) == sorted(config.seeds)
    by_rate = {}
    for run in runs['tune_dense'].values():
        by_rate.setdefault(run['hparams']['optimizer.learning_rate'], []).append(run['history'][-1]['val_accuracy'])
    best = max(by_rate, key=lambda rate: np.mean(by_rate[rate]))
    assert _choice(results, 'dense learning rate')['chosen'] == best
    ladder_epochs = len(config.keep_levels) * config.retrain_epochs
    for name in ('dense_finetuned', *(f'prune_{c}' for c in config.criteria)):
        assert {len(run['history']) for run in runs[name].values()} == {ladder_epochs}, name


@pytest.mark.slow
def test_the_ticket_takes_imps_last_masks_and_the_lecture_rule_retrains_after_its_rounds(quick):
    config, results, _ = quick('pruning')
    summary, runs = results['summary'], results['runs']
    rounds = [[row['kept_fraction'] for row in run['history'] if 'round' in row] for run in runs['imp'].values()]
    assert all(len(member) == config.imp_rounds for member in rounds)
    assert all(np.all(np.diff(member) < 0) for member in rounds)  # every round prunes
    assert summary['ticket_kept_fraction'] == pytest.approx(np.mean([member[-1] for member in rounds]), rel=1e-6)
    assert summary['ticket_error'] == pytest.approx(
        np.mean([1 - run['test']['accuracy'] for run in runs['ticket'].values()])
    )
    for run in runs['lecture'].values():
        history = run['history']
        assert len(history) == config.lecture_rounds * config.retrain_epochs + config.lecture_retrain_epochs
        assert not any('restored' in row for row in history[config.lecture_rounds * config.retrain_epochs :])
    widths = ['-'.join(map(str, row['widths'])) for row in results['neurons']]
    assert summary['structured_widths'] in widths + ['-'.join(map(str, config.model.hidden_widths))]
    assert _choice(results, 'neuron widths')['chosen'] in widths + ['dense']


@pytest.mark.slow
def test_pruning_is_under_the_results_protocol(protocol):
    protocol('pruning', seeds=10)


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('pruning')
