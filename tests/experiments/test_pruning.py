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
def test_the_ticket_reports_its_kept_fraction_and_the_neuron_cut_reports_a_net_that_was_trained(quick):
    config, results, _ = quick('pruning')
    summary = results['summary']
    assert summary['ticket_kept_fraction'] == pytest.approx(config.ticket_level, rel=0.05)
    assert summary['ticket_error'] == pytest.approx(
        np.mean([1 - run['test']['accuracy'] for run in results['runs']['ticket_rewind'].values()])
    )
    widths = ['-'.join(map(str, row['widths'])) for row in results['neurons']]
    assert summary['structured_widths'] in widths + ['-'.join(map(str, config.model.hidden_widths))]
    assert _choice(results, 'neuron widths')['chosen'] in widths + ['dense']


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('pruning')
