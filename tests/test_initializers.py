"""Tests for nets.initializers: empirical variances against the formulas, scale, keys, errors, flax use."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets.initializers import INITIALIZERS, expected_variance, get_initializer

FAN_IN, FAN_OUT = 784, 512
SHAPE = (FAN_IN, FAN_OUT)  # Dense kernel layout: (inputs, outputs).
KEY = jax.random.key(0)
# With 401,408 samples the variance estimate has a relative error near 0.2%, so 3% never fails by chance.
RTOL = 0.03
# jax's *_normal initializers truncate a standard normal at +-2, whose std is this, and divide it out.
TRUNCATED_STD = 0.87962566103423978  # written out here, not read from nets.initializers


def _std_for(name):
    return 0.02 if name in ('normal', 'truncated_normal') else None


def test_formula_values_by_hand():
    assert expected_variance('glorot_uniform', 784, 512) == pytest.approx(2 / 1296)
    assert expected_variance('glorot_normal', 784, 512) == pytest.approx(2 / 1296)
    assert expected_variance('he_uniform', 784, 512) == pytest.approx(2 / 784)
    assert expected_variance('he_normal', 784, 512) == pytest.approx(2 / 784)
    assert expected_variance('lecun_uniform', 784, 512) == pytest.approx(1 / 784)
    assert expected_variance('lecun_normal', 784, 512) == pytest.approx(1 / 784)
    assert expected_variance('uniform', 784, 512) == pytest.approx(0.0025 / 3)
    assert expected_variance('normal', 784, 512, std=0.1) == pytest.approx(0.01)
    # he doubles lecun: the factor 2 that makes up for relu zeroing half its inputs.
    assert expected_variance('he_normal', 300, 100) == pytest.approx(2 * expected_variance('lecun_normal', 300, 100))


@pytest.mark.parametrize('name', INITIALIZERS)
def test_empirical_variance_matches_formula(name):
    std = _std_for(name)
    w = np.asarray(get_initializer(name, std=std)(KEY, SHAPE), dtype=np.float64)
    assert w.shape == SHAPE and w.dtype == np.float64
    expected = expected_variance(name, FAN_IN, FAN_OUT, std=std)
    assert w.var() == pytest.approx(expected, rel=RTOL)
    assert abs(w.mean()) < 5 * np.sqrt(expected / w.size)


@pytest.mark.parametrize('name', ['glorot_normal', 'he_normal', 'lecun_normal'])
def test_normal_variants_are_truncated_at_two_sigma(name):
    w = np.asarray(get_initializer(name)(KEY, SHAPE))
    sigma = np.sqrt(expected_variance(name, FAN_IN, FAN_OUT)) / TRUNCATED_STD
    assert np.abs(w).max() <= 2 * sigma * (1 + 1e-6)
    # Nearly all of the +-2 sigma range is used, so the rescaling above is what sets the variance.
    assert np.abs(w).max() > 1.95 * sigma


@pytest.mark.parametrize('name', ['glorot_uniform', 'he_uniform', 'lecun_uniform'])
def test_uniform_variants_fill_their_limit(name):
    w = np.asarray(get_initializer(name)(KEY, SHAPE))
    limit = np.sqrt(3 * expected_variance(name, FAN_IN, FAN_OUT))
    assert np.abs(w).max() <= limit * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * limit


def test_keras_uniform_is_symmetric_within_five_hundredths():
    w = np.asarray(get_initializer('uniform')(KEY, (1000, 1000)), dtype=np.float64)
    assert w.min() >= -0.05 and w.max() <= 0.05
    assert w.min() < -0.0499 and w.max() > 0.0499
    assert abs(w.mean()) < 5 * 0.05 / np.sqrt(3 * w.size)
    assert np.mean(w < 0) == pytest.approx(0.5, abs=0.005)


def test_normal_uses_its_std():
    for std in (0.01, 0.1, 1.0):
        w = np.asarray(get_initializer('normal', std=std)(KEY, SHAPE), dtype=np.float64)
        assert w.std() == pytest.approx(std, rel=0.015)


def test_he_variance_is_twice_lecun():
    he = np.asarray(get_initializer('he_normal')(KEY, SHAPE), dtype=np.float64)
    lecun = np.asarray(get_initializer('lecun_normal')(jax.random.key(1), SHAPE), dtype=np.float64)
    assert he.var() / lecun.var() == pytest.approx(2.0, rel=RTOL)


@pytest.mark.parametrize('name', INITIALIZERS)
def test_scale_multiplies_the_draw_exactly(name):
    std = _std_for(name)
    base = get_initializer(name, std=std)(KEY, SHAPE)
    for scale in (3.0, 0.5, jnp.float32(3.0)):
        scaled = get_initializer(name, std=std, scale=scale)(KEY, SHAPE)
        np.testing.assert_array_equal(np.asarray(scaled), np.asarray(base) * np.float32(scale))


def test_traced_scale_in_a_vmapped_sweep():
    scales = jnp.array([0.1, 1.0, 3.0], jnp.float32)
    sweep = jax.jit(jax.vmap(lambda s: get_initializer('he_uniform', scale=s)(KEY, SHAPE)))(scales)
    base = np.asarray(get_initializer('he_uniform')(KEY, SHAPE))
    for i, s in enumerate(np.asarray(scales)):
        np.testing.assert_allclose(np.asarray(sweep[i]), base * s, rtol=1e-6)


@pytest.mark.parametrize('name', INITIALIZERS)
def test_keys_decide_the_draw(name):
    init = get_initializer(name, std=_std_for(name))
    a = np.asarray(init(KEY, (64, 32)))
    np.testing.assert_array_equal(a, np.asarray(init(jax.random.key(0), (64, 32))))
    b = np.asarray(init(jax.random.key(1), (64, 32)))
    assert not np.array_equal(a, b)
    assert np.mean(a == b) < 0.01


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_is_respected(dtype):
    for name in INITIALIZERS:
        w = get_initializer(name, std=_std_for(name), scale=2.0)(KEY, (16, 8), dtype)
        assert w.dtype == dtype


def test_works_as_flax_dense_kernel_init():
    layer = nn.Dense(FAN_OUT, kernel_init=get_initializer('he_normal'))
    params = layer.init(KEY, jnp.ones((1, FAN_IN)))['params']
    kernel = np.asarray(params['kernel'], dtype=np.float64)
    assert kernel.shape == SHAPE
    assert kernel.var() == pytest.approx(2 / FAN_IN, rel=RTOL)


def _assert_one_line(info):
    message = str(info.value)
    assert '\n' not in message
    return message


@pytest.mark.parametrize('bad', ['foo', 'xavier', 'Glorot_Uniform', ''])
def test_unknown_name_raises_one_line_listing_allowed(bad):
    for call in (lambda: get_initializer(bad), lambda: expected_variance(bad, 10, 10)):
        with pytest.raises(ValueError) as info:
            call()
        message = _assert_one_line(info)
        assert repr(bad) in message
        for name in INITIALIZERS:
            assert name in message


@pytest.mark.parametrize('std', [None, 0.0, -0.1, float('nan'), float('inf')])
@pytest.mark.parametrize('name', ['normal', 'truncated_normal'])
def test_normal_needs_a_positive_std(std, name):
    for call in (lambda: get_initializer(name, std=std), lambda: expected_variance(name, 10, 10, std=std)):
        with pytest.raises(ValueError, match='std') as info:
            call()
        _assert_one_line(info)


@pytest.mark.parametrize('name', [n for n in INITIALIZERS if n not in ('normal', 'truncated_normal')])
def test_std_for_another_initializer_is_refused(name):
    for call in (lambda: get_initializer(name, std=0.1), lambda: expected_variance(name, 10, 10, std=0.1)):
        with pytest.raises(ValueError, match='std') as info:
            call()
        message = _assert_one_line(info)
        assert repr(name) in message and "'normal'" in message


def test_expected_variance_refuses_non_positive_fans():
    with pytest.raises(ValueError, match='fan_in'):
        expected_variance('glorot_uniform', 0, 10)


def test_truncated_normal_is_tensorflows_cut_at_two_std_and_not_rescaled():
    w = np.asarray(get_initializer('truncated_normal', std=0.1)(KEY, SHAPE), dtype=np.float64)
    assert np.abs(w).max() <= 0.2 + 1e-6
    assert np.abs(w).max() > 0.19
    assert w.std() == pytest.approx(0.1 * TRUNCATED_STD, rel=RTOL)
