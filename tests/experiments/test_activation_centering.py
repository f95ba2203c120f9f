"""experiments/activation_centering.py: its :quick run (shared with the sealed-test check) pairs each centred
activation with the sigmoid."""

import pytest


@pytest.mark.slow
def test_each_activation_trains_as_named_and_is_paired_with_the_sigmoid(quick):
    _, results, _ = quick('activation_centering')
    runs = results['runs']
    assert set(runs) == {'sigmoid', 'centered_sigmoid', 'tanh'}
    loss = lambda name: runs[name]['seed=0,optimizer.learning_rate=1']['history'][-1]['train_loss']
    assert len({loss(name) for name in runs}) == 3
    assert {choice['choice'] for choice in results['choices']} == set(runs)
    assert len(results['claims']) == 4 and all(claim['variants'][1] == 'sigmoid' for claim in results['claims'])


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('activation_centering')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('activation_centering')
