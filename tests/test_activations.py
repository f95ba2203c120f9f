"""Tests for nets.activations: values, derivatives against jax.grad, slope checks, traced slopes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import activations
from nets.activations import ACTIVATIONS, activation_derivative, get_activation

POINTS = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 4.0], dtype=np.float32)
# A grid that avoids the kink at 0, where relu and leaky_relu have no derivative.
GRID = np.concatenate([np.linspace(-6, -0.01, 200), np.linspace(0.01, 6, 200)]).astype(np.float32)


def _numpy_activation(name, z, slope=0.01):
    z = z.astype(np.float64)
    return {
        'sigmoid': 1 / (1 + np.exp(-z)),
        'tanh': np.tanh(z),
        'relu': np.maximum(z, 0),
        'leaky_relu': np.where(z >= 0, z, slope * z),
        'centered_sigmoid': 1 / (1 + np.exp(-z)) - 0.5,
    }[name]


@pytest.mark.parametrize('name', ACTIVATIONS)
def test_values_match_numpy_formulas(name):
    got = np.asarray(get_activation(name)(jnp.asarray(POINTS)))
    np.testing.assert_allclose(got, _numpy_activation(name, POINTS), rtol=1e-6, atol=1e-7)


def test_known_values():
    assert float(get_activation('sigmoid')(jnp.float32(0.0))) == 0.5
    assert float(get_activation('tanh')(jnp.float32(0.0))) == 0.0
    assert float(get_activation('relu')(jnp.float32(-2.0))) == 0.0
    assert float(get_activation('relu')(jnp.float32(3.0))) == 3.0
    np.testing.assert_allclose(float(get_activation('leaky_relu', 0.2)(jnp.float32(-2.0))), -0.4, rtol=1e-6)
    assert float(get_activation('leaky_relu', 0.2)(jnp.float32(3.0))) == 3.0


@pytest.mark.parametrize('name', ACTIVATIONS)
@pytest.mark.parametrize('slope', [0.01, 0.3, -0.5, 2.0])
def test_derivative_matches_jax_grad(name, slope):
    f = get_activation(name, negative_slope=slope)
    autodiff = jax.vmap(jax.grad(f))(jnp.asarray(GRID))
    closed_form = activation_derivative(name, negative_slope=slope)(jnp.asarray(GRID))
    np.testing.assert_allclose(np.asarray(closed_form), np.asarray(autodiff), rtol=1e-5, atol=1e-7)


def test_derivative_closed_forms_by_hand():
    z = jnp.asarray(POINTS)
    s = 1 / (1 + np.exp(-POINTS.astype(np.float64)))
    np.testing.assert_allclose(np.asarray(activation_derivative('sigmoid')(z)), s * (1 - s), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(activation_derivative('tanh')(z)), 1 - np.tanh(POINTS.astype(np.float64)) ** 2, rtol=1e-5, atol=1e-6
    )
    # The sigmoid's derivative peaks at 1/4 at z = 0: the root of vanishing gradients in deep sigmoid nets.
    assert float(activation_derivative('sigmoid')(jnp.float32(0.0))) == 0.25
    assert float(activation_derivative('tanh')(jnp.float32(0.0))) == 1.0


def test_derivative_conventions_at_zero():
    zero = jnp.zeros((3,), jnp.float32)
    np.testing.assert_array_equal(np.asarray(activation_derivative('relu')(zero)), 0.0)
    np.testing.assert_allclose(np.asarray(activation_derivative('leaky_relu', 0.1)(zero)), 0.1, rtol=1e-6)
    # relu's convention agrees with jax's own gradient at 0.
    assert float(jax.grad(get_activation('relu'))(0.0)) == 0.0


def test_derivatives_are_float_of_input_dtype():
    z = jnp.asarray(GRID, dtype=jnp.bfloat16)
    for name in ACTIVATIONS:
        assert activation_derivative(name)(z).dtype == jnp.bfloat16
        assert get_activation(name)(z).dtype == jnp.bfloat16
    assert activation_derivative('relu')(jnp.arange(-2, 3)).dtype == jnp.float32


@pytest.mark.parametrize('slope', [1, 1.0, np.float32(1.0), np.float64(1.0), jnp.float32(1.0), np.array(1.0)])
def test_leaky_slope_one_is_refused(slope):
    for factory in (get_activation, activation_derivative):
        with pytest.raises(ValueError, match='linear') as info:
            factory('leaky_relu', negative_slope=slope)
        assert '\n' not in str(info.value)


@pytest.mark.parametrize('slope', [float('nan'), float('inf'), -np.inf, np.float32('nan')])
def test_leaky_non_finite_slope_is_refused(slope):
    with pytest.raises(ValueError, match='finite') as info:
        get_activation('leaky_relu', negative_slope=slope)
    assert '\n' not in str(info.value)


@pytest.mark.parametrize('slope', [0.0, -0.3, 0.999, 1.5, 3.0])
def test_other_slopes_are_allowed(slope):
    got = np.asarray(get_activation('leaky_relu', slope)(jnp.asarray(POINTS)))
    np.testing.assert_allclose(got, _numpy_activation('leaky_relu', POINTS, slope), rtol=1e-6, atol=1e-7)


def test_leaky_slope_zero_is_relu():
    z = jnp.asarray(GRID)
    np.testing.assert_array_equal(np.asarray(get_activation('leaky_relu', 0.0)(z)), np.asarray(jax.nn.relu(z)))
    np.testing.assert_array_equal(
        np.asarray(activation_derivative('leaky_relu', 0.0)(jnp.asarray(POINTS))),
        np.asarray(activation_derivative('relu')(jnp.asarray(POINTS))),
    )


def test_traced_slope_under_vmap():
    slopes = jnp.array([0.0, 0.01, 0.2, -0.5, 1.0 + 1e-3], jnp.float32)
    z = jnp.asarray(POINTS)
    values = jax.vmap(lambda a: get_activation('leaky_relu', a)(z))(slopes)
    derivatives = jax.vmap(lambda a: activation_derivative('leaky_relu', a)(z))(slopes)
    for i, a in enumerate(np.asarray(slopes)):
        np.testing.assert_allclose(
            np.asarray(values[i]), _numpy_activation('leaky_relu', POINTS, a), rtol=1e-6, atol=1e-7
        )
        np.testing.assert_allclose(np.asarray(derivatives[i]), np.where(POINTS > 0, 1.0, a), rtol=1e-6)


def test_traced_slope_under_jit_skips_the_check():
    # Under jit the slope is a tracer, so even 1 cannot be checked; it must trace rather than raise.
    f = jax.jit(lambda z, a: get_activation('leaky_relu', a)(z))
    np.testing.assert_allclose(
        np.asarray(f(jnp.asarray(POINTS), 0.2)), _numpy_activation('leaky_relu', POINTS, 0.2), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(POINTS), 1.0)), POINTS)
    grad_of_slope = jax.grad(lambda a: get_activation('leaky_relu', a)(jnp.float32(-2.0)))(0.1)
    np.testing.assert_allclose(float(grad_of_slope), -2.0)


@pytest.mark.parametrize('factory', [get_activation, activation_derivative])
@pytest.mark.parametrize('bad', ['foo', 'ReLU', 'softmax', ''])
def test_unknown_activation_raises_one_line_listing_allowed(factory, bad):
    with pytest.raises(ValueError) as info:
        factory(bad)
    message = str(info.value)
    assert '\n' not in message
    assert repr(bad) in message
    for name in ACTIVATIONS:
        assert name in message


def test_public_names():
    assert tuple(activations.ACTIVATIONS) == ('sigmoid', 'tanh', 'relu', 'leaky_relu', 'centered_sigmoid')
