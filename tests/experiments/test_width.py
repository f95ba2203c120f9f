"""experiments/width.py: its :quick run (shared with the sealed-test check) sweeps the width it says."""

import numpy as np
import pytest


@pytest.mark.slow
def test_each_width_trains_its_own_net_and_the_claims_pair_the_ends(quick):
    config, results, _ = quick('width')
    runs, summary = results['runs'], results['summary']
    assert set(runs) == {f'width_{width}' for width in config.widths}
    final_loss = {width: runs[f'width_{width}']['seed=0']['history'][-1]['train_loss'] for width in config.widths}
    assert len(set(final_loss.values())) == len(config.widths)  # a width that did not reach the model trains alike
    choice, narrower = results['choices']
    assert choice['choice'] == 'width' and summary['chosen_width'] == choice['chosen'] in config.widths
    # The second claim's reference is validation's choice among every width but the widest, never the widest itself.
    assert narrower['choice'] == 'narrower width' and len(narrower['values']) == len(config.widths) - 1
    assert summary['chosen_narrower_width'] == narrower['chosen'] in config.widths[:-1]
    best = max(
        config.widths[:-1],
        key=lambda w: np.mean([r['history'][-1]['val_accuracy'] for r in runs[f'width_{w}'].values()]),
    )
    assert narrower['chosen'] == best
    first, second = results['claims']
    assert first['variants'] == ['width_32', 'width_2'] and second['variants'] == ['width_32', f'width_{best}']
    for width in config.widths:
        members = runs[f'width_{width}'].values()
        gap = np.mean([run['history'][-1]['train_accuracy'] - run['test']['accuracy'] for run in members])
        assert summary[f'width_{width}_gap'] == pytest.approx(gap)


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('width')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('width')
