"""experiments/dropout_effects.py: its measures mean what they say, and its :quick run matches L2 to dropout on
validation and pairs the variants as declared."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import dropout_effects
from nets import runner, tasks


def test_the_correlation_counts_every_pair_of_varying_units_once_each_way():
    x = jnp.array([1.0, -1.0, 1.0, -1.0])
    y = jnp.array([1.0, 1.0, -1.0, -1.0])  # uncorrelated with x
    codes = jnp.stack([x, -x, jnp.full(4, 3.0), y], axis=1)  # unit 2 is constant: it counts in no pair
    # pairs (0, 1): 1; (0, 3) and (1, 3): 0
    assert float(dropout_effects._mean_abs_correlation(codes)) == pytest.approx(1 / 3)


def test_removing_a_unit_zeroes_its_outgoing_weights_only():
    params = {'dense_0': {'kernel': jnp.ones((3, 2))}, 'dense_1': {'kernel': jnp.arange(6.0).reshape(2, 3)}}
    removed = dropout_effects._remove_unit(params, 0, jnp.array(1))
    np.testing.assert_array_equal(removed['dense_1']['kernel'], [[0, 1, 2], [0, 0, 0]])
    np.testing.assert_array_equal(removed['dense_0']['kernel'], params['dense_0']['kernel'])
    np.testing.assert_array_equal(params['dense_1']['kernel'], jnp.arange(6.0).reshape(2, 3))  # not changed


def _net(seed=0):
    config = dropout_effects.get_config('quick')
    model = {**config.model.to_dict(), 'hidden_widths': (4, 3)}
    task, hparams = tasks.build({**config.to_dict(), 'model': model}, (4, 4, 1))
    return task, runner.initial_state(task, hparams, [{'seed': seed}, {'seed': seed + 1}], (4, 4, 1))


def test_no_noise_costs_nothing_and_a_square_over_the_whole_image_is_a_blank_image():
    task, state = _net()
    images = jax.random.uniform(jax.random.PRNGKey(1), (64, 16))
    labels = jax.random.randint(jax.random.PRNGKey(2), (64,), 0, 10)
    options = dict(probe=32, key=jax.random.PRNGKey(3))
    values = dropout_effects.measure(task, state, images, labels, (4, 4, 1), noise=0.0, occlusion=4, **options)
    np.testing.assert_array_equal(values['noise_drop'], 0.0)
    blank = dropout_effects.measure(
        task, state, jnp.zeros_like(images), labels, (4, 4, 1), noise=0.0, occlusion=1, **options
    )
    np.testing.assert_allclose(values['occlusion_drop'], values['accuracy'] - blank['accuracy'])
    # A unit whose outgoing weights are already 0 costs nothing to remove: an output kernel that is all zero.
    output = state.params['output']
    params = {**state.params, 'output': {**output, 'kernel': jnp.zeros_like(output['kernel'])}}
    silent = dropout_effects.measure(
        task, state.replace(params=params), images, labels, (4, 4, 1), noise=0.5, occlusion=2, **options
    )
    np.testing.assert_allclose(silent['unit_loss_1'], 0.0, atol=1e-6)
    assert np.all(np.asarray(values['unit_loss_1']) != 0.0)


@pytest.mark.slow
def test_l2_is_matched_to_dropout_on_validation_and_the_claims_pair_the_kept_members(quick):
    config, results, _ = quick('dropout_effects')
    assert set(results['runs']) == {'none', 'dropout', 'l2'}
    assert len(results['runs']['l2']) == len(config.l2) * len(config.seeds)
    (choice,) = results['choices']
    assert choice['rule'] == 'min' and [value for value, _ in choice['values']] == list(config.l2)
    assert results['summary']['l2_chosen'] == choice['chosen']
    assert [c['claim'] for c in results['claims']] == [text for *_, text, _ in dropout_effects.CLAIMS]
    assert all(set(results['measures'][name]['gap']) == {str(s) for s in config.seeds} for name in results['runs'])


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('dropout_effects')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('dropout_effects')
