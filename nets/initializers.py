"""Kernel initializers by name, as jax.nn.initializers functions, and the variance each one draws with."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from nets.registry import lookup

# Keras 1's default kernel initializer: U(-0.05, 0.05).
KERAS_UNIFORM_LIMIT = 0.05


def _keras_uniform(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -KERAS_UNIFORM_LIMIT, KERAS_UNIFORM_LIMIT)


# name -> factory(std) of a jax.nn.initializers function; only 'normal' and 'truncated_normal' take a std.
INITIALIZERS: dict[str, Callable[[float | None], jax.nn.initializers.Initializer]] = {
    'glorot_uniform': lambda std: jax.nn.initializers.glorot_uniform(),
    'glorot_normal': lambda std: jax.nn.initializers.glorot_normal(),
    'he_uniform': lambda std: jax.nn.initializers.he_uniform(),
    'he_normal': lambda std: jax.nn.initializers.he_normal(),
    'lecun_normal': lambda std: jax.nn.initializers.lecun_normal(),
    'lecun_uniform': lambda std: jax.nn.initializers.lecun_uniform(),
    'uniform': lambda std: _keras_uniform,
    'normal': lambda std: jax.nn.initializers.normal(stddev=float(std)),
    # TensorFlow's truncated_normal(stddev=std): N(0, std^2) cut at ±2 std, not rescaled (variance 0.774 std^2).
    'truncated_normal': lambda std: jax.nn.initializers.truncated_normal(stddev=float(std)),
}
WITH_STD = ('normal', 'truncated_normal')
# The standard deviation of a standard normal truncated at ±2.
TRUNCATED_STD = 0.87962566103423978


def _check_name_and_std(name: str, std: float | None) -> None:
    lookup(INITIALIZERS, name, 'initializer')
    if name in WITH_STD:
        if std is None:
            raise ValueError(f'initializer {name!r} needs std, the standard deviation of N(0, std^2)')
        if not (math.isfinite(float(std)) and float(std) > 0):
            raise ValueError(f'initializer {name!r} needs a finite std > 0, got {std!r}')
    elif std is not None:
        raise ValueError(
            f"std is only for initializers 'normal' and 'truncated_normal', not {name!r}; the others set their own "
            'variance'
        )


def get_initializer(
    name: str, std: float | None = None, scale: float | jax.Array = 1.0
) -> jax.nn.initializers.Initializer:
    """Kernel initializer `name` as a jax.nn.initializers function (key, shape, dtype) -> array.

    `scale` multiplies the draw (so the variance by scale^2); it may be a traced scalar in a vmapped sweep.
    """
    _check_name_and_std(name, std)
    base = INITIALIZERS[name](std)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        # Multiply even when scale is 1: a traced scale cannot be branched on, and x * 1 is exact.
        return base(key, shape, dtype) * jnp.asarray(scale, dtype)

    return init


def expected_variance(name: str, fan_in: int, fan_out: int, std: float | None = None) -> float:
    """The variance the initializer draws with, by its formula, for tests and reports.

    jax's *_normal initializers draw from a normal truncated at 2 sigma and rescaled so that this variance is exact.
    """
    _check_name_and_std(name, std)
    if fan_in <= 0 or fan_out <= 0:
        raise ValueError(f'fan_in and fan_out must be positive, got fan_in={fan_in}, fan_out={fan_out}')
    if name.startswith('glorot_'):
        return 2.0 / (fan_in + fan_out)
    if name.startswith('he_'):
        return 2.0 / fan_in
    if name.startswith('lecun_'):
        return 1.0 / fan_in
    if name == 'uniform':
        return KERAS_UNIFORM_LIMIT**2 / 3.0
    if name == 'truncated_normal':
        return (TRUNCATED_STD * float(std)) ** 2
    return float(std) ** 2
