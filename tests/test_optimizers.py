"""The optimizer room against references: every optimizer's steps equal Keras 3's optimizer of the same name at
Keras's defaults, decoupled decay sits where AdamW puts it and leaves biases alone, and a frozen leaf never moves."""

import os

os.environ.setdefault('KERAS_BACKEND', 'jax')  # real Keras without TensorFlow

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nets import optimizers, train

STEPS = 6


def _params():
    """A small params tree with non-zero biases, so that decay on a bias would show."""
    rng = np.random.default_rng(0)
    return {
        'dense_0': {'kernel': rng.normal(0, 1, (3, 4)).astype(np.float32), 'bias': np.full(4, 0.5, np.float32)},
        'output': {'kernel': rng.normal(0, 1, (4, 2)).astype(np.float32), 'bias': np.full(2, -1.0, np.float32)},
    }


def _gradient(params, step):
    """A gradient that depends on the weights and the step (a quadratic bowl whose centre moves)."""
    return jax.tree.map(lambda w: 0.7 * w + 0.3 * (step + 1) * jnp.cos(jnp.arange(w.size).reshape(w.shape)), params)


def _ours(config, steps=STEPS):
    """The params after `steps` updates of the chain `config` (config.optimizer) describes."""
    chain = optimizers.build(config, train.as_hparams(optimizers.sweepable_defaults(config)))
    return _run(chain, steps)


def _run(chain, steps=STEPS):
    params = jax.tree.map(jnp.asarray, _params())
    state = chain.init(params)
    for step in range(steps):
        updates, state = chain.update(_gradient(params, step), state, params)
        params = optax.apply_updates(params, updates)
    return params


def _keras(optimizer, steps=STEPS):
    """The same run with a Keras 3 optimizer, leaf by leaf."""
    keras = pytest.importorskip('keras')  # a test-only reference (pinned in requirements.txt), skipped where absent
    leaves, structure = jax.tree.flatten(_params())
    variables = [keras.Variable(leaf) for leaf in leaves]
    for step in range(steps):
        params = jax.tree.unflatten(structure, [jnp.asarray(v.value) for v in variables])
        optimizer.apply(jax.tree.leaves(_gradient(params, step)), variables)
    return jax.tree.unflatten(structure, [np.asarray(v.value) for v in variables])


def _close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize(
    'name, keras_name, keras_arguments',
    [
        ('sgd', 'SGD', {}),
        ('momentum', 'SGD', {'momentum': 0.9}),
        ('nesterov', 'SGD', {'momentum': 0.9, 'nesterov': True}),
        ('rmsprop', 'RMSprop', {}),
        ('adam', 'Adam', {}),
    ],
)
def test_each_optimizer_at_its_defaults_takes_the_steps_of_keras(name, keras_name, keras_arguments):
    keras = pytest.importorskip('keras')
    learning_rate = 0.01
    reference = _keras(getattr(keras.optimizers, keras_name)(learning_rate=learning_rate, **keras_arguments))
    ours = _ours({'name': name, 'learning_rate': learning_rate})
    # Keras adds epsilon to sqrt(v) before Adam's bias correction, optax after: they differ near a zero gradient.
    _close(ours, reference, rtol=2e-5, atol=1e-5 if name == 'adam' else 1e-6)
    assert not np.allclose(reference['dense_0']['kernel'], _params()['dense_0']['kernel'])  # the weights moved


def test_the_optimizers_defaults_are_keras_defaults():
    keras = pytest.importorskip('keras')
    adam, rmsprop = keras.optimizers.Adam(), keras.optimizers.RMSprop()
    assert dict(optimizers.OPTIMIZERS['adam'].fields) == {
        'b1': adam.beta_1, 'b2': adam.beta_2, 'epsilon': adam.epsilon
    }  # fmt: skip
    assert dict(optimizers.OPTIMIZERS['rmsprop'].fields) == {'rho': rmsprop.rho, 'epsilon': rmsprop.epsilon}


def test_nesterov_differs_from_plain_momentum():
    momentum = _ours({'name': 'momentum', 'learning_rate': 0.05})
    nesterov = _ours({'name': 'nesterov', 'learning_rate': 0.05})
    assert not np.allclose(momentum['dense_0']['kernel'], nesterov['dense_0']['kernel'], rtol=1e-3)


def test_sgd_is_w_minus_learning_rate_times_the_gradient():
    params = _params()
    stepped = _ours({'name': 'sgd', 'learning_rate': 0.1}, steps=1)
    for module in params:
        for leaf in params[module]:
            w = params[module][leaf]
            expected = w - 0.1 * (0.7 * w + 0.3 * np.cos(np.arange(w.size).reshape(w.shape)))
            np.testing.assert_allclose(stepped[module][leaf], expected, rtol=1e-6)


def test_decoupled_weight_decay_is_adamws_and_leaves_non_zero_biases_alone():
    """Adam + add_decayed_weights is optax's AdamW with the decay masked to kernels: the decay comes after Adam's
    scaling (decoupled, Loshchilov & Hutter), is scaled by the learning rate, and never touches a bias."""
    learning_rate, decay = 0.01, 0.1
    decayed = _ours(
        {
            'name': 'adam',
            'learning_rate': learning_rate,
            'transforms': ({'name': 'add_decayed_weights', 'weight_decay': decay},),
        }
    )
    kernels = lambda params: {module: {'kernel': True, 'bias': False} for module in params}
    adamw = optax.adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-7, weight_decay=decay, mask=kernels)
    _close(decayed, _run(adamw))
    plain = _ours({'name': 'adam', 'learning_rate': learning_rate})
    for module in decayed:
        np.testing.assert_allclose(decayed[module]['bias'], plain[module]['bias'], rtol=1e-6)  # no decay on biases
        assert not np.allclose(decayed[module]['kernel'], plain[module]['kernel'])  # the decay acted on kernels
    # By hand under SGD: w <- w - lr·(g + wd·w) for kernels, b <- b - lr·g for the (non-zero) biases.
    one = _ours(
        {'name': 'sgd', 'learning_rate': 0.1, 'transforms': ({'name': 'add_decayed_weights', 'weight_decay': decay},)},
        steps=1,
    )
    params = _params()
    for module in params:
        for leaf, decays in (('kernel', 1.0), ('bias', 0.0)):
            w = params[module][leaf]
            gradient = 0.7 * w + 0.3 * np.cos(np.arange(w.size).reshape(w.shape))
            np.testing.assert_allclose(one[module][leaf], w - 0.1 * (gradient + decays * decay * w), rtol=1e-6)


def test_a_frozen_leaf_never_moves_even_under_momentum_and_weight_decay():
    config = {
        'name': 'momentum',
        'learning_rate': 0.1,
        'transforms': (
            {'name': 'add_decayed_weights', 'weight_decay': 0.1},
            {'name': 'freeze', 'params': '^dense_0/'},
        ),
    }
    params, stepped = _params(), _ours(config)
    jax.tree.map(np.testing.assert_array_equal, stepped['dense_0'], params['dense_0'])
    assert not np.allclose(stepped['output']['kernel'], params['output']['kernel'])
