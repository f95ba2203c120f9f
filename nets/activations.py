"""Activation functions by name, and their closed-form derivatives for plots and diagnostics."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nets.registry import lookup


def _check_negative_slope(negative_slope: float | jax.Array) -> None:
    # A traced slope (a vmapped or jitted sweep) has no value yet, so only concrete slopes can be checked.
    if isinstance(negative_slope, jax.core.Tracer):
        return
    slope = np.asarray(negative_slope, dtype=np.float64)
    if not np.all(np.isfinite(slope)):
        raise ValueError(f'leaky_relu negative_slope must be finite, got {negative_slope!r}')
    if np.any(slope == 1.0):
        raise ValueError('leaky_relu negative_slope=1 makes the activation the identity, so the net would be linear')


def _as_float(z: jax.Array) -> jax.Array:
    z = jnp.asarray(z)
    return z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.float32)


def _leaky_relu(z: jax.Array, negative_slope: float | jax.Array) -> jax.Array:
    """max(z, 0) + negative_slope * min(z, 0), with the slope cast to z's dtype so bf16 nets stay bf16."""
    z = _as_float(z)
    return jnp.where(z >= 0, z, jnp.asarray(negative_slope, z.dtype) * z)


def _sigmoid_derivative(z: jax.Array) -> jax.Array:
    """sigmoid'(z) = s (1 - s); at most 1/4, which is why deep sigmoid nets see vanishing gradients."""
    s = jax.nn.sigmoid(_as_float(z))
    return s * (1 - s)


def _tanh_derivative(z: jax.Array) -> jax.Array:
    """tanh'(z) = 1 - tanh(z)^2."""
    t = jnp.tanh(_as_float(z))
    return 1 - t * t


def _relu_derivative(z: jax.Array) -> jax.Array:
    """relu'(z) = 1 for z > 0, else 0 (including z = 0, as jax.grad(jax.nn.relu) does)."""
    z = _as_float(z)
    return (z > 0).astype(z.dtype)


def _leaky_relu_derivative(z: jax.Array, negative_slope: float | jax.Array) -> jax.Array:
    """leaky_relu'(z) = 1 for z > 0, else negative_slope (including z = 0, matching relu's convention)."""
    z = _as_float(z)
    return jnp.where(z > 0, jnp.ones_like(z), jnp.asarray(negative_slope, z.dtype))


# name -> (function, closed-form derivative); leaky_relu's take the negative slope as a second argument.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    'sigmoid': (jax.nn.sigmoid, _sigmoid_derivative),
    'tanh': (jnp.tanh, _tanh_derivative),
    'relu': (jax.nn.relu, _relu_derivative),
    'leaky_relu': (_leaky_relu, _leaky_relu_derivative),
    # σ(z) − ½: the sigmoid made zero-centred, with its slope (tanh(z) = 2σ(2z) − 1 is centred too, but 4× steeper),
    # so that it isolates what the centring alone does (experiments/activation_centering).
    'centered_sigmoid': (lambda z: jax.nn.sigmoid(_as_float(z)) - 0.5, _sigmoid_derivative),
}


def _pick(name: str, negative_slope: float | jax.Array, which: int) -> Callable[[jax.Array], jax.Array]:
    function = lookup(ACTIVATIONS, name, 'activation')[which]
    if name != 'leaky_relu':
        return function
    _check_negative_slope(negative_slope)
    return functools.partial(function, negative_slope=negative_slope)


def get_activation(name: str, negative_slope: float | jax.Array = 0.01) -> Callable[[jax.Array], jax.Array]:
    """The activation function called `name`; leaky_relu uses `negative_slope` (ignored by the others)."""
    return _pick(name, negative_slope, 0)


def activation_derivative(name: str, negative_slope: float | jax.Array = 0.01) -> Callable[[jax.Array], jax.Array]:
    """Closed-form derivative f'(z) of the activation, for plots and vanishing-gradient diagnostics.

    At the kink z = 0, relu' is 0 and leaky_relu' is `negative_slope` (the left derivative).
    """
    return _pick(name, negative_slope, 1)
