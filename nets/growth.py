"""Growing a network: pure transforms of the whole TrainState that add hidden units.

Adding units changes shapes, so training goes on with one recompile: the Task rebuilds the model from the new
widths (`Task.architecture_of`), and a checkpoint records them so that a resumed run restores the grown state.
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

from nets import train


def _next_layer(params: Any, layer: int) -> str:
    return f'dense_{layer + 1}' if f'dense_{layer + 1}' in params else 'output'


def _widen(tree: Any, layer: int, n: int, fill: Callable[[str, str, Any], Any]) -> Any:
    """A params-like tree with hidden layer `layer` `n` units wider: dense_<layer>'s outputs, its batch norm, and the
    next layer's inputs. `fill(module, leaf, array)` gives the entries appended to `array` (any member axes lead)."""
    if tree is None:
        return None
    tree = {module: dict(leaves) for module, leaves in tree.items()}
    widened = [(f'dense_{layer}', -1), (f'batch_norm_{layer}', -1), (_next_layer(tree, layer), -2)]
    for module, axis in widened:
        for leaf, array in tree.get(module, {}).items():
            if array is None or (axis == -2 and leaf != 'kernel'):
                continue  # the next layer's bias does not depend on its input width
            extra = fill(module, leaf, array)
            tree[module][leaf] = jnp.concatenate([array, jnp.asarray(extra, array.dtype)], axis=axis)
    return tree


def _new_entries(array: Any, n: int, axis: int, value: float) -> Any:
    shape = list(array.shape)
    shape[axis] = n
    return jnp.full(shape, value, array.dtype)


def add_neurons(state: train.TrainState, layer: int, n: int, new_in: Any, new_out: Any) -> train.TrainState:
    """The state with `n` units added to hidden layer `layer` (0-based): their incoming weights `new_in`
    [..., fan_in, n], zero biases, outgoing weights `new_out` [..., n, fan_out]; batch norm (if any) gets scale 1,
    offset 0, running mean 0 and variance 1; every optimizer moment that mirrors the params gets zeros, and the
    masks (if any) ones. With zero `new_out` the network computes the same function as before.
    """
    next_layer = _next_layer(state.params, layer)

    def params_fill(module, leaf, array):
        if module == f'dense_{layer}':
            return new_in if leaf == 'kernel' else _new_entries(array, n, -1, 0.0)
        if module == next_layer:
            return new_out
        return _new_entries(array, n, -1, 1.0 if leaf == 'scale' else 0.0)  # batch norm

    def zeros(module, leaf, array):
        return _new_entries(array, n, -2 if module == next_layer else -1, 0.0)

    def ones(module, leaf, array):
        return _new_entries(array, n, -2 if module == next_layer else -1, 1.0)

    def stats_fill(module, leaf, array):
        return _new_entries(array, n, -1, 1.0 if leaf == 'var' else 0.0)

    params = _widen(state.params, layer, n, params_fill)
    best = state.best
    if best is not None:
        best = {
            'params': _widen(best['params'], layer, n, params_fill),
            'batch_stats': _widen(best['batch_stats'], layer, n, stats_fill),
        }
    return state.replace(
        params=params,
        batch_stats=_widen(state.batch_stats, layer, n, stats_fill),
        opt_state=train.map_like_params(
            lambda moments: _widen(moments, layer, n, zeros), state.opt_state, state.params
        ),
        masks=_widen(state.masks, layer, n, ones),
        best=best,
    )
