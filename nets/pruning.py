"""Pruning: masks that mirror the params, kept exact by an after-update hook.

Masks live in `TrainState.masks` (1 keeps a weight, 0 removes it; None leaves a whole leaf alone). `apply_masks`
is the Task's `after_update`: after every optimizer step it sets the removed weights, and the optimizer moments
that mirror them, back to exactly zero, whatever the chain (momentum, Adam, decoupled decay) did.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from nets import train


def _mask_tree(tree: Any, masks: Any) -> Any:
    return jax.tree.map(
        lambda leaf, mask: leaf if mask is None else jnp.where(mask, leaf, jnp.zeros_like(leaf)),
        tree,
        masks,
        is_leaf=lambda node: node is None,
    )


def apply_masks(state: train.TrainState) -> train.TrainState:
    """The state with every masked weight, and its optimizer moments, at exactly zero."""
    if state.masks is None:
        return state
    return state.replace(
        params=_mask_tree(state.params, state.masks),
        opt_state=train.map_like_params(
            lambda moments: _mask_tree(moments, state.masks), state.opt_state, state.params
        ),
    )
