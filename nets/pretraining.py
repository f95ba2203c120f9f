"""Pretraining: an autoencoder's encoder transplanted into a classifier, and per-unit subsample pretraining.

Autoencoder pretraining (Hinton & Salakhutdinov 2006; Vincent et al. 2008 for the denoising kind): train
`models.Autoencoder` on unlabeled images with the ordinary `fit`, cut the decoder off (`encoder`), put the encoder's
layers into a classifier with a fresh head (`transplant`, `with_encoder`), and fine-tune it fully, with the encoder
frozen, or with a lower learning rate for it (`fine_tuning_transforms`).

Subsample pretraining: every group of first-layer units, with a small head of its own, learns from its own random
subsample of the labeled images (`pretrain_units`, all groups and seeds in one vmapped program), so that the groups
pick up different features; `assemble_units` then puts them side by side as one layer.
Everything here is a pure function of pytrees; the leaves may carry leading member axes (seeds, swept values).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from nets import losses, train
from nets.registry import lookup

ENCODER = '^dense_'  # the classifier's hidden layers (and batch norms are 'batch_norm_'): everything but the head


def _encoder_module(name: str) -> bool:
    return name.startswith(('dense_', 'batch_norm_'))


def encoder(params: Mapping[str, Any], batch_stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The encoder of an autoencoder's (or a classifier's) variables: its dense_i and batch_norm_i modules, as
    {'params': ..., 'batch_stats': ...}; the decoder and any head are cut off."""
    return {
        'params': {name: leaves for name, leaves in params.items() if _encoder_module(name)},
        'batch_stats': {name: leaves for name, leaves in (batch_stats or {}).items() if _encoder_module(name)},
    }


def _replace(tree: Mapping[str, Any], modules: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`tree` with the modules of `modules` put in; ValueError when one is missing or has other shapes."""
    tree = dict(tree)
    for name, leaves in modules.items():
        if name not in tree:
            raise ValueError(f'cannot transplant {what} {name!r}: the target has only {", ".join(tree)}')
        want = jax.tree.map(jnp.shape, tree[name])
        got = jax.tree.map(jnp.shape, leaves)
        if want != got:
            raise ValueError(f'cannot transplant {what} {name!r}: shapes {got} do not fit the target {want}')
        tree[name] = leaves
    return tree


def transplant(
    params: Mapping[str, Any], batch_stats: Mapping[str, Any], pretrained: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A classifier's params and batch_stats with the modules of `pretrained` (from `encoder` or
    `assemble_units`) put in place of its own; its other layers (the head) keep their fresh initialisation."""
    return (
        _replace(params, pretrained['params'], 'params'),
        _replace(batch_stats or {}, pretrained.get('batch_stats', {}), 'batch_stats'),
    )


def with_encoder(state: train.TrainState, pretrained: Mapping[str, Any]) -> train.TrainState:
    """A fresh classifier TrainState with pretrained layers transplanted in and every optimizer moment zeroed
    (stacked states take stacked `pretrained` leaves, member for member)."""
    # Copies: fit() donates the state, which must not delete the caller's pretrained arrays.
    params, batch_stats = transplant(state.params, state.batch_stats, jax.tree.map(jnp.copy, dict(pretrained)))
    best = state.best
    if best is not None:
        best = jax.tree.map(jnp.copy, {'params': params, 'batch_stats': batch_stats})
    return state.replace(
        params=params,
        batch_stats=batch_stats,
        opt_state=train.map_like_params(lambda moments: jax.tree.map(jnp.zeros_like, moments), state.opt_state, params),
        best=best,
    )


def take_members(tree: Any, indices: Sequence[int]) -> Any:
    """Members `indices` of a stacked pytree, in that order (an encoder per seed, repeated for each swept value)."""
    indices = jnp.asarray(indices)
    return jax.tree.map(lambda leaf: leaf[indices], tree)


# Fine-tuning modes: the optimizer.transforms entries of each, given the encoder's learning-rate factor.
FINE_TUNING = {
    'full': lambda factor: (),
    # No updates for the encoder: the core's `freeze`, optax `set_to_zero` on it.
    'frozen': lambda factor: ({'name': 'freeze', 'params': ENCODER},),
    # The encoder's updates times the factor, a sweepable hyper-parameter.
    'lower_learning_rate': lambda factor: ({'name': 'scale_updates', 'factor': factor},),
}


def fine_tuning_transforms(mode: str, encoder_learning_rate_factor: float = 0.1) -> tuple[dict[str, Any], ...]:
    """The optimizer.transforms entries of the fine-tuning mode registered as `mode` ('full', 'frozen' or
    'lower_learning_rate')."""
    return lookup(FINE_TUNING, mode, 'fine-tuning mode')(encoder_learning_rate_factor)


def reconstruct(task: train.Task, state: train.TrainState, images: jax.Array) -> jax.Array:
    """An autoencoder's reconstructions of `images` in [0, 1] (the sigmoid of its logits when it was trained with
    binary cross-entropy), in evaluation mode: no corruption."""
    model = task.model(state.hparams, state.params)
    variables = {'params': state.params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}
    outputs = model.apply(variables, images, train=False)
    return jax.nn.sigmoid(outputs) if task.loss is losses.LOSSES['binary_cross_entropy'] else outputs


def reconstruction_mse(task: train.Task, state: train.TrainState, images: jax.Array, members: bool = False) -> Any:
    """Mean squared error per pixel between images and their reconstructions (one value per member)."""
    error = lambda s: jnp.square(reconstruct(task, s, images) - images.reshape(images.shape[0], -1)).mean()
    return jax.jit(jax.vmap(error) if members else error)(state)


def _unit_batches(key: jax.Array, size: int, steps: int, batch_size: int) -> jax.Array:
    """[steps, batch_size] positions in a subsample of `size`: shuffled passes over it, one after the other."""
    passes = -(-steps * batch_size // size)
    order = jax.vmap(lambda p: jax.random.permutation(jax.random.fold_in(key, p), size))(jnp.arange(passes))
    return order.reshape(-1)[: steps * batch_size].reshape(steps, batch_size)


def pretrain_units(
    task: train.Task,
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    subsample: jax.Array,
    order_keys: jax.Array,
    *,
    steps: int,
) -> tuple[train.TrainState, dict[str, jax.Array]]:
    """Trains every unit group (a member of the stacked `state`: a one-hidden-layer net with its own head) for
    `steps` steps of `task`'s train_step on its own subsample (its row of `subsample`, shuffled by its row of
    `order_keys`), all groups as one vmapped, scanned program. Returns the state and the metrics [steps, groups]."""
    size = subsample.shape[1]
    step = jax.vmap(lambda s, x, y: train.train_step(task, s, x, y))

    def program(state, subsample, order_keys, images, labels):
        order = jax.vmap(lambda key: _unit_batches(key, size, steps, task.batch_size))(order_keys)
        examples = jax.vmap(lambda rows, positions: rows[positions])(subsample, order)  # [units, steps, batch]
        body = lambda state, indices: step(state, images[indices], labels[indices])
        return jax.lax.scan(body, state, jnp.swapaxes(examples, 0, 1))

    return jax.jit(program)(state, subsample, order_keys, images, labels)


def assemble_units(params: Mapping[str, Any], with_head: bool = False) -> dict[str, Any]:
    """One first layer from unit groups (params stacked on axis -3 of the kernels: [..., groups, inputs, width]),
    the groups side by side: {'params': {'dense_0': ...}}, for `transplant`. With `with_head`, also an 'output'
    layer that averages the groups' heads, so a one-hidden-layer net computes the mean of the groups' logits."""
    kernel, bias = params['dense_0']['kernel'], params['dense_0']['bias']
    *lead, groups, inputs, width = kernel.shape
    assembled = {
        'dense_0': {
            'kernel': jnp.moveaxis(kernel, -3, -2).reshape(*lead, inputs, groups * width),
            'bias': bias.reshape(*lead, groups * width),
        }
    }
    if with_head:
        head = params['output']
        assembled['output'] = {
            'kernel': head['kernel'].reshape(*lead, groups * width, head['kernel'].shape[-1]) / groups,
            'bias': head['bias'].mean(-2),
        }
    return {'params': assembled}


def pretrain_first_layer(
    task: train.Task,
    hparams: Mapping[str, jax.Array],
    seeds: Sequence[int],
    images: jax.Array,
    labels: jax.Array,
    *,
    groups: int,
    subsample_size: int,
    steps: int,
) -> tuple[dict[str, Any], dict[str, jax.Array]]:
    """Subsample pretraining of a first layer for every seed at once: `groups` unit groups per seed (`task` is one
    group's one-hidden-layer net), each trained on its own subsample of `subsample_size` labeled images, then
    assembled. Returns the assembled layers stacked over seeds, and the per-step metrics [steps, seeds, groups]."""
    if not 0 < subsample_size <= len(images):
        raise ValueError(f'a subsample has 1 to {len(images)} examples, got {subsample_size}')

    # Per seed: the groups' initial weights, their subsamples and their batch orders, each from its own key.
    def keys(purpose):
        split = lambda seed: jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), purpose), groups)
        return jax.jit(jax.vmap(split))(jnp.asarray(seeds)).reshape(len(seeds) * groups, -1)

    state = train.init_members(task, [hparams] * len(seeds) * groups, keys(0), images.shape[1:])
    draw = jax.jit(jax.vmap(lambda key: jax.random.permutation(key, len(images))[:subsample_size]))
    state, metrics = pretrain_units(task, state, images, labels, draw(keys(1)), keys(2), steps=steps)
    by_seed = jax.tree.map(lambda leaf: leaf.reshape(len(seeds), groups, *leaf.shape[1:]), state.params)
    metrics = jax.tree.map(lambda m: m.reshape(steps, len(seeds), groups), metrics)
    return assemble_units(by_seed), metrics
