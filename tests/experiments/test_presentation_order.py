"""experiments/presentation_order.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest


@pytest.mark.slow
def test_presentation_order_quick_trains_every_order(quick):
    _, results, workdir = quick('presentation_order')
    summary, runs = results['summary'], results['runs']
    names = ('reshuffle', 'fixed', 'sorted_by_class', 'hardest_first', 'easiest_first', 'class_balanced')
    assert set(runs) == set(names)
    for name in names:
        assert summary[f'accuracy_{name}'] == pytest.approx(
            np.mean([r['test']['accuracy'] for r in runs[name].values()])
        )
    # Each order trains differently from the default reshuffle.
    loss = lambda name: runs[name]['seed=0']['history'][-1]['train_loss']
    assert len({loss(name) for name in names}) == len(names)


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('presentation_order')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('presentation_order', seeds=10)
