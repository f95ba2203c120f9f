"""experiments/activation_cost.py: it times the activation it names, and pairs each with ReLU round by round."""

import jax.numpy as jnp
import pytest

from experiments import activation_cost
from nets import experiment


@pytest.mark.slow
def test_activation_cost_quick_pairs_every_activation_with_relu(quick):
    config, results, _ = quick('activation_cost')
    claims = results['claims']
    assert len(claims) == 2 * 3 * len(config.nets)  # train and infer, three activations against relu, per net
    for claim in claims:
        assert claim['variants'][1] == 'relu' and claim['reference'] == 1.0 and claim['seeds'] == config.rounds
        assert claim['value'] > -1.0  # a ratio of two positive times, less one
    times = results['times']['16x16/train']
    assert set(times) == set(config.activations) and all(len(t) == config.rounds for t in times.values())


def test_each_program_computes_its_own_activation(tmp_path):
    config = activation_cost.get_config('quick')
    run = experiment.Experiment(config, str(tmp_path))
    batches = (jnp.zeros((2, 4, 28, 28, 1)), jnp.zeros((2, 4), jnp.int32))
    test = (jnp.zeros((8, 28, 28, 1)), jnp.zeros(8, jnp.int32))
    text = {
        a: activation_cost.programs(run, (16,), a, batches, test)[1][0].as_text() for a in ('relu', 'sigmoid', 'tanh')
    }
    assert 'tanh' in text['tanh'] and 'tanh' not in text['relu']
    assert any(op in text['sigmoid'] for op in ('logistic', 'exponential')) and 'logistic' not in text['relu']


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    """It reads no data at all today: a ratchet for later changes."""
    sealed('activation_cost')
