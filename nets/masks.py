"""Masks that mirror the params: which weights exist. Pruning removes weights with them, and growth holds a shape
bucket's spare units at zero with them.

A mask is a bool pytree shaped like the params (True keeps a weight), kept in `TrainState.masks`. `apply_masks` is
the Task's `after_update`: after every optimizer step it sets the removed weights, and every optimizer moment that
mirrors them, back to exactly zero, whatever the chain (momentum, Adam, decoupled decay) did. Leaves are chosen by
their path ('dense_0/kernel') with a regex, as the optimizer's masked transforms choose theirs (`param_mask`).
Any leading axes of a leaf are member axes of a sweep; the last two of a kernel are its weights.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from nets import train

KERNELS = 'kernel$'  # the leaves whose weights pruning removes ('dense_0/kernel'); biases keep a mask of ones


def leaf_path(path) -> str:
    """A pytree key path as 'module/leaf'."""
    return '/'.join(str(getattr(key, 'key', key)) for key in path)


def param_mask(pattern: str) -> Callable[[Any], Any]:
    """A function of params giving True for every leaf whose path ('dense_0/kernel') the regex `pattern` searches:
    the mask of an optax masked transform, or which leaves may lose weights."""
    compiled = re.compile(pattern)
    return lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: bool(compiled.search(leaf_path(path))), params
    )


def ones(params: Any) -> Any:
    """Masks that keep every weight of `params`."""
    return jax.tree.map(lambda leaf: jnp.ones(leaf.shape, bool), params)


def mask_tree(tree: Any, masks: Any) -> Any:
    """`tree` with every entry that `masks` removes set to zero (a None mask leaves its leaf alone)."""
    return jax.tree.map(
        lambda leaf, mask: leaf if mask is None else jnp.where(mask, leaf, jnp.zeros_like(leaf)),
        tree,
        masks,
        is_leaf=lambda node: node is None,
    )


def apply_masks(state: train.TrainState) -> train.TrainState:
    """The state with every masked weight, and its optimizer moments, at exactly zero (the Task's after_update)."""
    if state.masks is None:
        return state
    return state.replace(
        params=mask_tree(state.params, state.masks),
        opt_state=train.map_like_params(lambda moments: mask_tree(moments, state.masks), state.opt_state, state.params),
    )


def count_kept(masks: Any, pattern: str = KERNELS) -> tuple[jax.Array, int]:
    """(kept, total) weights of the leaves `pattern` chooses; the kept count has the masks' member axes."""
    chosen = [leaf for leaf, use in zip(jax.tree.leaves(masks), jax.tree.leaves(param_mask(pattern)(masks))) if use]
    kept = sum(leaf.reshape(*leaf.shape[: leaf.ndim - 2], -1).sum(-1) for leaf in chosen)
    total = sum(int(np.prod(leaf.shape[-2:])) for leaf in chosen)
    return kept, total


def kept_by_layer(masks: Any, pattern: str = KERNELS) -> dict[str, np.ndarray]:
    """The kept fraction of every leaf `pattern` chooses ('dense_0/kernel' -> fraction, with member axes)."""
    compiled = re.compile(pattern)
    return {
        leaf_path(path): np.asarray(leaf.reshape(*leaf.shape[: leaf.ndim - 2], -1).mean(-1))
        for path, leaf in jax.tree_util.tree_flatten_with_path(masks)[0]
        if compiled.search(leaf_path(path))
    }


def kernel_vector(tree: Any, member: int, pattern: str = KERNELS) -> np.ndarray:
    """Member `member`'s entries of the leaves `pattern` chooses in a stacked params-like tree, as one flat vector."""
    chosen = zip(jax.tree.leaves(tree), jax.tree.leaves(param_mask(pattern)(tree)))
    return np.concatenate([np.asarray(leaf[member]).reshape(-1) for leaf, use in chosen if use])
