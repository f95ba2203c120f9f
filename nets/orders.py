"""The order in which training examples are presented: one index permutation an epoch, computed on the device
inside the epoch program.

An order is a pure function (key, num_examples, labels, losses, batch_size) -> indices [steps, batch_size] (the
last partial batch is dropped); `losses` are the per-example losses of the current weights, computed only for the
orders that read them. By name (`config.order`):

    reshuffle        a fresh random permutation every epoch (the default; SGD's usual assumption)
    fixed            one random permutation, drawn once and reused every epoch
    sorted_by_class  all the 0s, then all the 1s, ...: the damage a bad order does
    hardest_first    by decreasing loss under the current weights
    easiest_first    by increasing loss (a curriculum)
    class_balanced   stratified: every batch holds each class in proportion to its share of the data (random
                     within a class)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from nets.registry import lookup


def batches(indices: jax.Array, batch_size: int) -> jax.Array:
    """Indices as [steps, batch_size], the last partial batch dropped."""
    steps = indices.shape[0] // batch_size
    return indices[: steps * batch_size].reshape(steps, batch_size)


def batch_order(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Shuffled example indices as [steps, batch_size]; the last partial batch is dropped."""
    return batches(jax.random.permutation(key, num_examples), batch_size)


def _reshuffle(key, num_examples, labels, losses, batch_size):
    return batch_order(key, num_examples, batch_size)


def _sorted_by_class(key, num_examples, labels, losses, batch_size):
    return batches(jnp.argsort(labels, stable=True), batch_size)


def _by_loss(descending: bool):
    def order(key, num_examples, labels, losses, batch_size):
        # A random permutation first breaks ties (equal losses) at random rather than by index.
        shuffled = jax.random.permutation(key, num_examples)
        ranked = jnp.argsort(-losses[shuffled] if descending else losses[shuffled], stable=True)
        return batches(shuffled[ranked], batch_size)

    return order


def _class_balanced(key, num_examples, labels, losses, batch_size):
    shuffled = jax.random.permutation(key, num_examples)
    grouped = shuffled[jnp.argsort(labels[shuffled], stable=True)]  # by class, random within a class
    sorted_labels = labels[grouped]
    first = jnp.searchsorted(sorted_labels, sorted_labels, side='left')
    count = jnp.searchsorted(sorted_labels, sorted_labels, side='right') - first
    # Stratified: the i-th of a class's n examples goes to the fraction (i + ½)/n of the epoch, so every stretch of
    # the epoch (every batch) holds each class in proportion to its size, to within about one example.
    place = (jnp.arange(num_examples) - first + 0.5) / count
    return batches(grouped[jnp.lexsort((sorted_labels, place))], batch_size)


@dataclasses.dataclass(frozen=True)
class Order:
    """A registered order: the function, whether it reads per-example losses, and whether its key is the same
    every epoch."""

    indices: Callable[[jax.Array, int, jax.Array | None, jax.Array | None, int], jax.Array]
    reads_losses: bool = False
    same_every_epoch: bool = False
    reads_labels: bool = False


ORDERS: dict[str, Order] = {
    'reshuffle': Order(_reshuffle),
    'fixed': Order(_reshuffle, same_every_epoch=True),
    'sorted_by_class': Order(_sorted_by_class, reads_labels=True),
    'hardest_first': Order(_by_loss(descending=True), reads_losses=True),
    'easiest_first': Order(_by_loss(descending=False), reads_losses=True),
    'class_balanced': Order(_class_balanced, reads_labels=True),
}


def get_order(name: str) -> Order:
    """The order registered as `name`."""
    return lookup(ORDERS, name, 'order')
