"""Losses and their metrics by name: what a Task minimises and what it reports.

A loss knows its targets: the labels for classification, the (flattened) inputs for reconstruction. Its metrics
are what the history records as `train_<name>` and `val_<name>`, and what early stopping may monitor.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from nets.registry import lookup


@dataclasses.dataclass(frozen=True)
class Loss:
    """`value(outputs, targets)` is minimised; `metrics(outputs, targets)` includes it as 'loss'."""

    value: Callable[[jax.Array, jax.Array], jax.Array]
    extra_metrics: dict[str, Callable[[jax.Array, jax.Array], jax.Array]]
    targets: str  # 'labels' or 'inputs'

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ('loss', *self.extra_metrics)

    def target(self, images: jax.Array, labels: jax.Array) -> jax.Array:
        """What the outputs are compared with: the labels, or the inputs flattened as the model flattens them."""
        return labels if self.targets == 'labels' else images.reshape(images.shape[0], -1)

    def extra(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        """The metrics other than the loss."""
        return {name: metric(outputs, targets) for name, metric in self.extra_metrics.items()}

    def metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        """The loss and the other metrics."""
        return {'loss': self.value(outputs, targets), **self.extra(outputs, targets)}


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose largest logit is the label."""
    return (jnp.argmax(logits, -1) == labels).mean()


def mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Squared error summed over features, averaged over the batch (the image's reconstruction error)."""
    return jnp.square(outputs - targets).sum(-1).mean()


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Sigmoid cross-entropy of logits against targets in [0, 1], summed over features, averaged over the batch."""
    return optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1).mean()


def mean_absolute_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean absolute difference per feature: a scale-free reconstruction metric."""
    return jnp.abs(outputs - targets).mean()


def _sigmoid_mean_absolute_error(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return mean_absolute_error(jax.nn.sigmoid(logits), targets)


def half_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Regression: ½·mean((ŷ - y)²) of a single output against real-valued targets (the ½ makes the gradient the
    textbook Xᵀ(Xw - y)/n of a linear model)."""
    return 0.5 * jnp.square(outputs[..., 0] - targets).mean()


def _squared_error_metric(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.square(outputs[..., 0] - targets).mean()


LOSSES: dict[str, Loss] = {
    'softmax_cross_entropy': Loss(softmax_cross_entropy, {'accuracy': accuracy}, 'labels'),
    # Reconstruction: the model's outputs are the image (mse) or the image's logits (binary cross-entropy).
    'mse': Loss(mean_squared_error, {'mae': mean_absolute_error}, 'inputs'),
    'binary_cross_entropy': Loss(binary_cross_entropy, {'mae': _sigmoid_mean_absolute_error}, 'inputs'),
    # Regression of one real-valued target (labels are float32): a linear model's least squares.
    'half_squared_error': Loss(half_squared_error, {'mse': _squared_error_metric}, 'labels'),
}


def get_loss(name: str) -> Loss:
    """The loss registered as `name`."""
    return lookup(LOSSES, name, 'loss')
