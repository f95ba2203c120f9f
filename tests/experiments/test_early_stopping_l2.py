"""experiments/early_stopping_l2.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import pytest


@pytest.mark.slow
def test_early_stopping_l2_quick_tracks_the_ridge_path(quick):
    """The lecture's early stopping ≈ L2: the gradient-descent weights stay near the ridge path, by the headline."""
    _, results, workdir = quick('early_stopping_l2')
    summary = results['summary']
    # Near, not equal: 1 - exp(-x) against x / (1 + x) differ by up to ~20% of a direction's shrinkage.
    assert 0.05 < summary['max_relative_distance'] < 0.35
    assert 0 < summary['max_relative_distance_to_nearest_ridge'] < summary['max_relative_distance']
    assert 0 < summary['sgd_max_relative_distance'] < 0.35
    assert (workdir / 'trajectory.png').stat().st_size > 0


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('early_stopping_l2')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('early_stopping_l2')
