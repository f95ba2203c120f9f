"""Losses and metrics against hand computations in NumPy (float64): the value, its reduction over the batch and over
features, and the registry entries' targets."""

import jax.numpy as jnp
import numpy as np
import pytest

from nets import losses

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(0, 2, (6, 10)).astype(np.float32)
LABELS = np.array([3, 0, 9, 3, 7, 1])
OUTPUTS = RNG.uniform(-1, 2, (6, 12)).astype(np.float32)
TARGETS = RNG.uniform(0, 1, (6, 12)).astype(np.float32)


def _log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_softmax_cross_entropy_is_the_batch_mean_of_minus_log_p_label():
    expected = -_log_softmax(LOGITS)[np.arange(6), LABELS].mean()
    assert float(losses.softmax_cross_entropy(LOGITS, LABELS)) == pytest.approx(expected, rel=1e-6)
    # A mean, not a sum: the loss of a batch of one example repeated is that example's loss.
    repeated = losses.softmax_cross_entropy(np.repeat(LOGITS[:1], 5, 0), np.repeat(LABELS[:1], 5))
    assert float(repeated) == pytest.approx(-_log_softmax(LOGITS[:1])[0, LABELS[0]], rel=1e-6)


def test_accuracy_counts_the_examples_whose_largest_logit_is_the_label():
    logits = np.zeros((4, 10), np.float32)
    logits[[0, 1, 2, 3], [3, 9, 9, 0]] = 1.0  # predictions 3, 9, 9, 0 (class 9 is the last one)
    assert float(losses.accuracy(logits, np.array([3, 9, 1, 0]))) == 0.75


def test_reconstruction_losses_sum_over_features_and_average_over_the_batch():
    difference = np.asarray(OUTPUTS, np.float64) - TARGETS
    assert float(losses.mean_squared_error(OUTPUTS, TARGETS)) == pytest.approx((difference**2).sum(1).mean(), 1e-6)
    x, z = np.asarray(OUTPUTS, np.float64), np.asarray(TARGETS, np.float64)
    probability = 1 / (1 + np.exp(-x))
    cross_entropy = -(z * np.log(probability) + (1 - z) * np.log(1 - probability))
    assert float(losses.binary_cross_entropy(OUTPUTS, TARGETS)) == pytest.approx(cross_entropy.sum(1).mean(), 1e-5)
    # The scale-free metrics are per feature.
    assert float(losses.mean_absolute_error(OUTPUTS, TARGETS)) == pytest.approx(np.abs(difference).mean(), 1e-6)
    mae = losses.LOSSES['binary_cross_entropy'].extra_metrics['mae']
    assert float(mae(OUTPUTS, TARGETS)) == pytest.approx(np.abs(probability - z).mean(), 1e-6)


def test_half_squared_error_is_half_the_mean_square_so_its_gradient_is_the_textbook_one():
    outputs, targets = OUTPUTS[:, :1], TARGETS[:, 0]
    residual = np.asarray(outputs[:, 0], np.float64) - targets
    assert float(losses.half_squared_error(outputs, targets)) == pytest.approx(0.5 * (residual**2).mean(), 1e-6)
    metric = losses.LOSSES['half_squared_error'].extra_metrics['mse']
    assert float(metric(outputs, targets)) == pytest.approx((residual**2).mean(), 1e-6)


@pytest.mark.parametrize(
    'name, targets, metric_names',
    [
        ('softmax_cross_entropy', 'labels', ('loss', 'accuracy')),
        ('mse', 'inputs', ('loss', 'mae')),
        ('binary_cross_entropy', 'inputs', ('loss', 'mae')),
        ('half_squared_error', 'labels', ('loss', 'mse')),
    ],
)
def test_each_loss_compares_with_its_own_targets_and_reports_its_metrics(name, targets, metric_names):
    loss = losses.get_loss(name)
    images, labels = jnp.ones((2, 3, 4)), jnp.array([1, 2])
    assert loss.metric_names == metric_names
    expected = labels if targets == 'labels' else images.reshape(2, 12)
    np.testing.assert_array_equal(loss.target(images, labels), expected)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get_loss('hinge')
