"""Hidden units of an MLP as slices of params-like trees: the surgery beneath growth (add units) and pruning (remove
units).

Hidden layer `layer`'s units live in three places: the outputs of `dense_<layer>` (its kernel's last axis and its
bias), its batch norm `batch_norm_<layer>` (if any), and the inputs of the next dense layer (that kernel's axis -2;
its bias does not depend on them). Every function here works on any tree that mirrors the params (the params,
optimizer moments, masks, a pruning state's trees) and keeps any leading member axes of a sweep.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def next_layer(tree: Any, layer: int) -> str:
    """The dense module that reads hidden layer `layer`: dense_<layer + 1>, or the output layer."""
    return f'dense_{layer + 1}' if f'dense_{layer + 1}' in tree else 'output'


def unit_axes(tree: Any, layer: int) -> list[tuple[str, int]]:
    """(module, axis of the units of hidden layer `layer`) for every module whose shape depends on its width."""
    return [(f'dense_{layer}', -1), (f'batch_norm_{layer}', -1), (next_layer(tree, layer), -2)]


def _unit_leaves(tree: Any, layer: int):
    """(module, leaf, array, axis) for every leaf of `tree` that holds hidden layer `layer`'s units."""
    for module, axis in unit_axes(tree, layer):
        for leaf, array in tree.get(module, {}).items():
            if array is not None and not (axis == -2 and leaf != 'kernel'):  # the next layer's bias has no units
                yield module, leaf, array, axis


def _copy_modules(tree: Any) -> dict:
    return {module: dict(leaves) for module, leaves in tree.items()}


def widen(tree: Any, layer: int, fill: Callable[[str, str, Any, int], Any]) -> Any:
    """`tree` with units appended to hidden layer `layer`: `fill(module, leaf, array, axis)` gives the entries
    appended to `array` along `axis` (their count is the number of new units)."""
    if tree is None:
        return None
    grown = _copy_modules(tree)
    for module, leaf, array, axis in _unit_leaves(tree, layer):
        extra = jnp.asarray(fill(module, leaf, array, axis), array.dtype)
        grown[module][leaf] = jnp.concatenate([array, extra], axis=axis)
    return grown


def new_entries(array: Any, n: int, axis: int, value: float) -> jax.Array:
    """`n` entries of `value` to append to `array` along `axis`."""
    shape = list(array.shape)
    shape[axis] = n
    return jnp.full(shape, value, array.dtype)


def write(tree: Any, layer: int, start: Any, n: int, values: Callable[[str, str], Any]) -> Any:
    """`tree` with units [start, start + n) of hidden layer `layer` overwritten by `values(module, leaf)` (broadcast
    to the slice; `start` may be traced)."""
    written = _copy_modules(tree)
    for module, leaf, array, axis in _unit_leaves(tree, layer):
        shape = list(array.shape)
        shape[axis] = n
        value = jnp.broadcast_to(jnp.asarray(values(module, leaf), array.dtype), shape)
        written[module][leaf] = jax.lax.dynamic_update_slice_in_dim(array, value, start, array.ndim + axis)
    return written


def keep(tree: Any, layer: int, units: jax.Array) -> Any:
    """`tree` with only the units `units` ([..., n] indices, member axes leading) of hidden layer `layer`."""
    if tree is None:
        return None
    kept = _copy_modules(tree)
    for module, leaf, array, axis in _unit_leaves(tree, layer):
        index = units[..., None, :] if axis == -1 and array.ndim == units.ndim + 1 else units
        index = index[..., :, None] if axis == -2 else index
        kept[module][leaf] = jnp.take_along_axis(array, index, axis=axis)
    return kept


def width_of(params: Any, layer: int) -> int:
    """The number of units (active or spare) of hidden layer `layer`."""
    return int(params[f'dense_{layer}']['kernel'].shape[-1])


def active_units(state: Any, layer: int) -> np.ndarray:
    """The number of active units of hidden layer `layer`, per member (an int array of the member axes' shape, 0-d for
    one state): all of them, unless masks mark spare ones."""
    members = np.shape(state.step)
    if state.masks is None or state.masks.get(f'dense_{layer}') is None:
        return np.full(members, width_of(state.params, layer))
    return np.asarray(state.masks[f'dense_{layer}']['bias']).sum(axis=-1)


def unit_masks(params: Any, layer: int, active: Any) -> Any:
    """Masks mirroring `params` that keep the first `active` units of hidden layer `layer` (one count, or one per
    member: [...] for params with member axes [...]) and everything else."""
    masks = jax.tree.map(lambda leaf: jnp.ones(leaf.shape, bool), params)
    keep_first = jnp.arange(width_of(params, layer)) < jnp.asarray(active)[..., None]  # [..., width]
    dense, following = f'dense_{layer}', next_layer(params, layer)
    masks[dense] = {
        leaf: jnp.broadcast_to(keep_first if leaf == 'bias' else keep_first[..., None, :], array.shape)
        for leaf, array in params[dense].items()
    }
    kernel = params[following]['kernel']
    masks[following] = {**masks[following], 'kernel': jnp.broadcast_to(keep_first[..., :, None], kernel.shape)}
    return masks


def silent(params: Any, layer: int) -> jax.Array:
    """Which units of hidden layer `layer` have all outgoing weights at zero ([..., width] bools): removing them
    leaves the network's function unchanged."""
    return jnp.all(params[next_layer(params, layer)]['kernel'] == 0, axis=-1)
