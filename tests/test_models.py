"""MLP: dropout keys, batch-norm modes, sown intermediates, and refusals of bad settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import models


def _variables(model, inputs):
    return model.init(jax.random.PRNGKey(0), inputs, train=False)


def test_same_dropout_key_same_mask_and_other_key_other_mask():
    model = models.MLP(hidden_widths=(64,), input_dropout=0.5, hidden_dropout=0.5)
    x = jnp.ones((8, 784))
    variables = _variables(model, x)
    run = lambda key: model.apply(variables, x, train=True, rngs={'dropout': key})
    first, again, other = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_dropout_keeps_the_expected_fraction_and_rescales():
    model = models.MLP(hidden_widths=(4,), input_dropout=0.3)
    x = jnp.ones((1, 100_000))
    variables = _variables(model, x)
    dropped = models.dropout(model.bind(variables, rngs={'dropout': jax.random.PRNGKey(3)}), x, 0.3, True)
    kept = np.asarray(dropped) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(np.asarray(dropped)[kept], 1 / 0.7, rtol=1e-6)


def test_eval_is_deterministic_and_ignores_dropout():
    model = models.MLP(hidden_widths=(32, 32), hidden_dropout=0.5, input_dropout=0.2)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 784))
    variables = _variables(model, x)
    np.testing.assert_array_equal(model.apply(variables, x, train=False), model.apply(variables, x, train=False))


@pytest.mark.parametrize('placement', ['before', 'after'])
def test_batch_norm_train_updates_running_stats_and_eval_uses_them(placement):
    model = models.MLP(hidden_widths=(16,), batch_norm=placement)
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), (256, 784))
    variables = _variables(model, x)
    before = variables['batch_stats']
    _, updated = model.apply(variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(0)}, mutable=['batch_stats'])
    after = updated['batch_stats']
    # Keras momentum 0.99: new running mean = 0.99 * 0 + 0.01 * batch mean.
    z = x @ variables['params']['dense_0']['kernel'] + variables['params']['dense_0']['bias']
    if placement == 'after':
        z = jax.nn.relu(z)
    np.testing.assert_allclose(after['batch_norm_0']['mean'], 0.01 * z.mean(0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(after['batch_norm_0']['var'], before['batch_norm_0']['var'])
    # Eval reads the running statistics: changing them changes the output; a different batch does not matter.
    new_variables = {'params': variables['params'], 'batch_stats': after}
    eval_old = model.apply(variables, x[:4], train=False)
    eval_new = model.apply(new_variables, x[:4], train=False)
    assert not np.allclose(eval_old, eval_new)
    np.testing.assert_allclose(model.apply(new_variables, x, train=False)[:4], eval_new, rtol=1e-5, atol=1e-5)


def test_intermediates_are_sown_per_layer():
    model = models.MLP(hidden_widths=(32, 16), activation='tanh')
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 784))
    variables = _variables(model, x)
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    sown = state['intermediates']
    assert set(sown) == {'preactivation_0', 'activation_0', 'preactivation_1', 'activation_1'}
    np.testing.assert_allclose(sown['activation_0'][0], jnp.tanh(sown['preactivation_0'][0]), rtol=1e-6)
    assert sown['activation_1'][0].shape == (4, 16)


def test_lenet_300_100_shapes_and_zero_biases():
    model = models.lenet_300_100()
    params = _variables(model, jnp.zeros((1, 28, 28, 1)))['params']
    shapes = {name: layer['kernel'].shape for name, layer in params.items()}
    assert shapes == {'dense_0': (784, 300), 'dense_1': (300, 100), 'output': (100, 10)}
    assert all(not np.any(layer['bias']) for layer in params.values())


@pytest.mark.parametrize(
    'settings, message',
    [
        ({'activation': 'swish'}, 'unknown activation'),
        ({'activation': 'leaky_relu', 'negative_slope': 1.0}, 'linear'),
        ({'kernel_init': 'orthogonal'}, 'unknown initializer'),
        ({'batch_norm': 'middle'}, 'batch_norm'),
        ({'batch_norm': 'before', 'batch_norm_layers': (1,)}, 'hidden layers are 0..0'),
        ({'hidden_dropout': 1.0}, 'dropout rate'),
    ],
)
def test_bad_settings_are_refused_with_one_line(settings, message):
    with pytest.raises(ValueError, match=message) as error:
        models.MLP(hidden_widths=(8,), **settings).init(jax.random.PRNGKey(0), jnp.zeros((1, 784)), train=True)
    assert '\n' not in str(error.value)


def test_batch_norm_layers_normalize_only_the_named_hidden_layers():
    model = models.MLP(hidden_widths=(8, 8, 8), batch_norm='after', batch_norm_layers=(0, 2))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((4, 784)), train=True)
    assert sorted(name for name in variables['params'] if name.startswith('batch_norm')) == [
        'batch_norm_0',
        'batch_norm_2',
    ]
    assert sorted(variables['batch_stats']) == ['batch_norm_0', 'batch_norm_2']
