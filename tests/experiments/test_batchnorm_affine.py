"""experiments/batchnorm_affine.py: its :quick run (shared with the sealed-test check) ablates γ and β as it says."""

import pytest


@pytest.mark.slow
def test_each_variant_has_the_batch_norm_parameters_it_names(quick):
    config, results, workdir = quick('batchnorm_affine')
    runs = results['runs']
    assert set(runs) == {'learned', 'scale_only', 'shift_only', 'fixed'}
    # Each variant's members train differently: the parameters γ and β change what the net computes.
    loss = lambda name: runs[name]['seed=0,optimizer.learning_rate=1']['history'][-1]['train_loss']
    assert len({loss(name) for name in runs}) == 4
    assert {choice['choice'] for choice in results['choices']} == set(runs)
    assert len(results['claims']) == 6 and all(claim['variants'][1] == 'fixed' for claim in results['claims'])


def test_fixed_scale_and_shift_leave_no_parameters_and_normalize_exactly():
    """γ = 1 and β = 0 without parameters: the layer's output is (z − mean) / sqrt(var + ε) of its batch."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nets import models

    model = models.MLP(hidden_widths=(5,), num_classes=3, batch_norm='before', batch_norm_scale=False,
                       batch_norm_shift=False, activation='relu')  # fmt: skip
    inputs = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
    variables = model.init(jax.random.PRNGKey(1), inputs, train=False)
    assert 'batch_norm_0' not in variables['params']
    _, sown = model.apply(variables, inputs, train=True, mutable=['batch_stats', 'intermediates'])
    z = inputs @ variables['params']['dense_0']['kernel'] + variables['params']['dense_0']['bias']
    expected = (z - z.mean(0)) / jnp.sqrt(z.var(0) + model.batch_norm_epsilon)
    learned = models.MLP(hidden_widths=(5,), num_classes=3, batch_norm='before', activation='relu')
    params = learned.init(jax.random.PRNGKey(1), inputs, train=False)['params']['batch_norm_0']
    assert set(params) == {'scale', 'bias'}
    preactivation = sown['intermediates']['preactivation_0'][0]
    np.testing.assert_allclose(preactivation, expected, atol=1e-5)


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('batchnorm_affine')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('batchnorm_affine')
