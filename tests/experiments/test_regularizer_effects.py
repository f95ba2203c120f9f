"""experiments/regularizer_effects.py: its measures mean what they say, and its :quick run pairs each variant with
`none`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import regularizer_effects
from nets import runner, tasks


def test_the_measures_of_a_net_built_by_hand():
    config = regularizer_effects.get_config('quick')
    task, hparams = tasks.build({**config.to_dict(), 'model': {**config.model.to_dict(), 'hidden_widths': (3, 2)}},
                                (2, 2, 1))  # fmt: skip
    state = runner.initial_state(task, hparams, [{'seed': 0}], (2, 2, 1))
    # Unit 0 relies on input 0 alone; unit 1 on inputs 0 and 1 alike; unit 2 on input 3, whose spread is 0.
    kernel = jnp.array([[2.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    params = jax.tree.map(jnp.zeros_like, state.params)
    params['dense_0']['kernel'] = kernel[None]
    params['dense_0']['bias'] = jnp.array([[0.0, 0.0, 1.0]])
    state = state.replace(params=params)
    spread = jnp.array([1.0, 1.0, 1.0, 0.0])
    images = jnp.array([[1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]).reshape(2, 2, 2, 1)
    values = regularizer_effects.measure(task, state, images, spread)
    # unit 0: 2 of 2; unit 1: 1 of 2; unit 2 relies only on an input without spread, so it has no share
    assert float(values['concentration'][0]) == pytest.approx(0.75)
    # first layer outputs: image 1 -> relu(2, 1, 1) = all non-zero; image 2 -> relu(-2, -1, 1) -> two zeros of six
    assert float(values['zeros_0'][0]) == pytest.approx(2 / 6)
    assert float(values['norm_0'][0]) == pytest.approx(float(jnp.linalg.norm(kernel)))


@pytest.mark.slow
def test_each_variant_has_its_penalty_and_is_paired_with_none(quick):
    config, results, _ = quick('regularizer_effects')
    assert set(results['runs']) == set(regularizer_effects.VARIANTS)
    loss = lambda name: results['runs'][name]['seed=0']['history'][0]['train_loss']
    assert len({loss(name) for name in regularizer_effects.VARIANTS}) == len(regularizer_effects.VARIANTS)
    against = regularizer_effects.AGAINST
    assert [c['variants'] for c in results['claims']] == [
        [v, against.get(v, 'none')] for v, *_ in regularizer_effects.CLAIMS
    ]
    assert set(results['measures']) == set(regularizer_effects.VARIANTS)
    for name in regularizer_effects.PLANTED:  # measured on the planted runs, by seed
        assert set(results['measures'][name]['reliance']) == {str(seed) for seed in config.seeds}
    # The planted variants train on other inputs than their unplanted twins.
    assert loss('spurious_none') != loss('none') and loss('spurious_l2') != loss('l2_all')


def test_the_planted_input_tells_the_truth_on_the_agreeing_fraction_and_nothing_at_random():
    images = jnp.full((4000, 5), 0.5)
    labels = jnp.arange(4000) % 10
    truth = (labels < 5).astype(jnp.float32)
    key = jax.random.PRNGKey(0)
    planted = lambda agreement: regularizer_effects.plant(images, labels, 3, agreement, key)
    np.testing.assert_array_equal(planted(1.0)[:, 3], truth)
    np.testing.assert_array_equal(planted(0.0)[:, 3], 1 - truth)
    np.testing.assert_array_equal(planted(0.9)[:, [0, 1, 2, 4]], images[:, [0, 1, 2, 4]])  # only the pixel changes
    assert float(jnp.mean(planted(0.9)[:, 3] == truth)) == pytest.approx(0.9, abs=0.02)
    at_random = planted(None)[:, 3]
    assert set(np.unique(at_random).tolist()) == {0.0, 1.0}
    assert float(jnp.mean(at_random == truth)) == pytest.approx(0.5, abs=0.03)  # independent of the label


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('regularizer_effects')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('regularizer_effects')
