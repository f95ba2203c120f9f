"""Pruning: masks that mirror the params, saliency criteria, prune / restore / rewind, and neuron removal.

Masks live in `TrainState.masks`, a bool pytree mirroring params (True keeps a weight). `apply_masks` is the Task's
`after_update`: after every optimizer step it sets the removed weights, and the optimizer moments that mirror them,
back to exactly zero, whatever the chain (momentum, Adam, decoupled decay) did. Only kernels are pruned
(`PRUNABLE`); biases keep a mask of ones.

`TrainState.pruning` holds what the lecture's rule and a lottery-ticket rewind need, so that a checkpoint (and
`--resume`) carries it: {'rewind': the params to rewind to, 'removed': the last removed group's values (zero
elsewhere), 'previous_masks': the masks before that removal}, plus whatever masks-like trees an experiment adds.

Saliency: one function per criterion, each giving a params-like tree of scores (small = unimportant):
`exact_saliency` (the loss increase when one weight alone is zeroed, on a validation batch), `obd_saliency`
(LeCun et al. 1990; the Gauss–Newton diagonal for softmax cross-entropy, else Hutchinson's Hessian diagonal),
`taylor_saliency` |w·g|, `magnitude_saliency` |w| and `random_saliency`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from nets import losses, train
from nets.activations import get_activation

PRUNABLE = 'kernel$'  # the leaves that pruning removes weights from, by path ('dense_0/kernel')
CRITERIA = ('exact', 'obd', 'taylor', 'magnitude', 'random')


def _path(path) -> str:
    return '/'.join(str(getattr(key, 'key', key)) for key in path)


def prunable(params: Any, pattern: str = PRUNABLE) -> Any:
    """A params-like tree of Python bools: which leaves may lose weights."""
    compiled = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(lambda path, _: bool(compiled.search(_path(path))), params)


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


def start(state: train.TrainState) -> train.TrainState:
    """The state ready for pruning: masks of ones, and its current params kept as the rewind point."""
    masks = jax.tree.map(lambda leaf: jnp.ones(leaf.shape, bool), state.params)
    return state.replace(
        masks=masks,
        pruning={
            'rewind': jax.tree.map(jnp.copy, state.params),
            'removed': jax.tree.map(jnp.zeros_like, state.params),
            'previous_masks': jax.tree.map(jnp.copy, masks),
        },
    )


def set_rewind_point(state: train.TrainState) -> train.TrainState:
    """The state with its current params as the rewind point (Frankle et al.'s rewind to an early epoch)."""
    return state.replace(pruning={**state.pruning, 'rewind': jax.tree.map(jnp.copy, state.params)})


def count_kept(masks: Any, pattern: str = PRUNABLE) -> tuple[jax.Array, int]:
    """(kept, total) prunable weights; the kept count has the masks' member axes."""
    flags = jax.tree.leaves(prunable(masks, pattern))
    leaves = [leaf for leaf, flag in zip(jax.tree.leaves(masks), flags) if flag]
    kept = sum(leaf.reshape(*leaf.shape[: leaf.ndim - 2], -1).sum(-1) for leaf in leaves)
    total = sum(int(np.prod(leaf.shape[-2:])) for leaf in leaves)
    return kept, total


def kept_by_layer(masks: Any, pattern: str = PRUNABLE) -> dict[str, np.ndarray]:
    """The kept fraction of every prunable leaf ('dense_0/kernel' -> fraction, with member axes)."""
    flat = jax.tree_util.tree_flatten_with_path(masks)[0]
    compiled = re.compile(pattern)
    return {
        _path(path): np.asarray(leaf.reshape(*leaf.shape[: leaf.ndim - 2], -1).mean(-1))
        for path, leaf in flat
        if compiled.search(_path(path))
    }


# ---- Saliency criteria. Each takes one member's params; small scores are pruned first. ----


def magnitude_saliency(params: Any) -> Any:
    """|w|."""
    return jax.tree.map(jnp.abs, params)


def random_saliency(params: Any, key: jax.Array) -> Any:
    """Uniform noise: the control that any criterion must beat."""
    leaves, structure = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(structure, [jax.random.uniform(k, leaf.shape) for k, leaf in zip(keys, leaves)])


def taylor_saliency(loss_of: Callable[[Any], jax.Array], params: Any) -> Any:
    """First-order Taylor: |w·∂L/∂w|, the linearized loss change when w is zeroed."""
    return jax.tree.map(lambda w, g: jnp.abs(w * g), params, jax.grad(loss_of)(params))


def hessian_diagonal(loss_of: Callable[[Any], jax.Array], params: Any, key: jax.Array, probes: int = 64) -> Any:
    """Hutchinson's estimate of diag(H): the mean of v ⊙ Hv over Rademacher vectors v (Hv by forward-over-reverse)."""
    grad = jax.grad(loss_of)
    leaves, structure = jax.tree.flatten(params)

    def one(probe_key):
        keys = jax.random.split(probe_key, len(leaves))
        v = jax.tree.unflatten(
            structure, [jax.random.rademacher(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
        )
        hv = jax.jvp(grad, (params,), (v,))[1]
        return jax.tree.map(jnp.multiply, v, hv)

    samples = jax.lax.map(one, jax.random.split(key, probes), batch_size=min(probes, 16))
    return jax.tree.map(lambda leaf: leaf.mean(0), samples)


def gauss_newton_diagonal(logits_of: Callable[[Any, jax.Array], jax.Array], params: Any, images: jax.Array) -> Any:
    """diag of the Gauss–Newton matrix of the mean softmax cross-entropy (its Fisher): the mean over examples of
    Σ_c p_c·(∂ log p_c/∂w)². Never negative, like LeCun et al.'s approximation of the Hessian."""

    def per_example(image):
        log_probabilities = lambda p: jax.nn.log_softmax(logits_of(p, image[None]))[0]
        jacobian = jax.jacrev(log_probabilities)(params)  # leaves [classes, ...]
        probabilities = jnp.exp(log_probabilities(params))
        return jax.tree.map(lambda j: jnp.tensordot(probabilities, j * j, axes=1), jacobian)

    squares = jax.lax.map(per_example, images, batch_size=min(len(images), 16))
    return jax.tree.map(lambda leaf: leaf.mean(0), squares)


def obd_saliency(diagonal: Any, params: Any) -> Any:
    """Optimal Brain Damage (LeCun et al. 1990): ½·h_ii·w_i², from a Hessian diagonal estimate h."""
    return jax.tree.map(lambda h, w: 0.5 * h * w * w, diagonal, params)


def _layers(params: Mapping[str, Any]) -> list[str]:
    """The dense layers of an MLP's params in order: dense_0, dense_1, ..., output."""
    names = []
    while f'dense_{len(names)}' in params:
        names.append(f'dense_{len(names)}')
    if 'output' not in params or any(name.startswith('batch_norm') for name in params):
        raise ValueError('the fast exact saliency needs an MLP without batch norm (dense_i ... output)')
    return names + ['output']


@flax.struct.dataclass
class _Forward:
    """An MLP's forward pass kept layer by layer (x_l enters layer l, z_l = x_l W_l + b_l), and the rest of the
    pass from any layer's pre-activation. A pytree, so that jitted candidate chunks take it as an argument."""

    kernels: list
    biases: list
    inputs: list
    preactivations: list
    activation: Callable = flax.struct.field(pytree_node=False)

    @classmethod
    def of(cls, params, images, activation):
        names = _layers(params)
        kernels = [params[name]['kernel'] for name in names]
        biases = [params[name]['bias'] for name in names]
        x, inputs, preactivations = images.reshape(images.shape[0], -1), [], []
        for kernel, bias in zip(kernels, biases):
            inputs.append(x)
            preactivations.append(x @ kernel + bias)
            x = activation(preactivations[-1])
        return cls(kernels, biases, inputs, preactivations, activation)

    @property
    def logits(self) -> jax.Array:
        return self.preactivations[-1]

    def from_preactivation(self, layer: int, z: jax.Array) -> jax.Array:
        """The logits when layer `layer`'s pre-activation is `z`."""
        for following in range(layer + 1, len(self.kernels)):
            z = self.activation(z) @ self.kernels[following] + self.biases[following]
        return z

    def after_unit_change(self, layer: int, unit: jax.Array, change: jax.Array) -> jax.Array:
        """The logits when the output of hidden unit `unit` of layer `layer` changes by `change` [batch]: a rank-one
        update of the next pre-activation, then the rest of the pass."""
        z = self.preactivations[layer + 1] + change[:, None] * self.kernels[layer + 1][unit][None, :]
        return self.from_preactivation(layer + 1, z)

    def after_zeroing(self, layer: int, index: jax.Array) -> jax.Array:
        """The logits with weight `index` (flat, row-major) of layer `layer`'s kernel alone set to zero."""
        fan_out = self.kernels[layer].shape[1]
        row, column = index // fan_out, index % fan_out
        change = -self.kernels[layer][row, column] * self.inputs[layer][:, row]  # of z_l[:, column]
        if layer == len(self.kernels) - 1:
            return self.logits.at[:, column].add(change)
        z = self.preactivations[layer][:, column]
        return self.after_unit_change(layer, column, self.activation(z + change) - self.activation(z))


@functools.partial(jax.jit, static_argnames=('layer', 'loss'))
def _zeroing_losses(forward: _Forward, labels: jax.Array, indices: jax.Array, layer: int, loss: Callable) -> jax.Array:
    """The loss increase for each candidate in `indices` of layer `layer`'s kernel, vmapped."""
    base = loss(forward.logits, labels)
    return jax.vmap(lambda index: loss(forward.after_zeroing(layer, index), labels))(indices) - base


def exact_saliency(
    params: Any,
    images: jax.Array,
    labels: jax.Array,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    activation: str = 'relu',
    *,
    keep: Any = None,
    chunk: int = 1024,
) -> Any:
    """The lecture's criterion: L(w with w_i = 0) − L(w) for every kernel weight alone, on (images, labels).

    Each candidate costs one rank-one update and the rest of the forward pass from the layer after its own, vmapped
    over chunks of `chunk` candidates. With `keep` (masks), only kept weights are scored (the others get 0).
    Biases are not candidates (their score is +inf). For an MLP without batch norm (dropout is off in evaluation).
    """
    names = _layers(params)
    forward = jax.jit(_Forward.of, static_argnums=2)(params, images, get_activation(activation))
    scores = {name: {leaf: jnp.full(value.shape, jnp.inf) for leaf, value in params[name].items()} for name in params}
    for layer, name in enumerate(names):
        size = params[name]['kernel'].size
        candidates = np.arange(size) if keep is None else np.flatnonzero(np.asarray(keep[name]['kernel']).reshape(-1))
        values = np.zeros(size, np.float32)
        for begin in range(0, len(candidates), chunk):
            indices = candidates[begin : begin + chunk]
            losses = _zeroing_losses(forward, labels, np.pad(indices, (0, chunk - len(indices))), layer, loss)
            values[indices] = np.asarray(losses)[: len(indices)]
        scores[name]['kernel'] = jnp.asarray(values.reshape(params[name]['kernel'].shape))
    return scores


def exact_neuron_saliency(
    params: Any, images: jax.Array, labels: jax.Array, loss: Callable, activation: str = 'relu'
) -> list[jax.Array]:
    """The loss increase when each hidden unit's output alone is zeroed: one [width] array per hidden layer."""
    forward = _Forward.of(params, images, get_activation(activation))
    base = loss(forward.logits, labels)

    def layer_scores(layer):
        outputs = forward.activation(forward.preactivations[layer])
        change = lambda unit: loss(forward.after_unit_change(layer, unit, -outputs[:, unit]), labels) - base
        return jax.vmap(change)(jnp.arange(outputs.shape[1]))

    return [layer_scores(layer) for layer in range(len(forward.kernels) - 1)]


def saliency(
    criterion: str,
    task: train.Task,
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    probes: int = 64,
) -> Any:
    """The scores of one member's params by `criterion` (one of CRITERIA), on a validation batch."""
    if criterion not in CRITERIA:
        raise ValueError(f'unknown pruning criterion {criterion!r}; allowed: {", ".join(CRITERIA)}')
    model = task.model(state.hparams, state.params)
    if criterion == 'exact':
        activation = getattr(model, 'activation', 'relu')
        return exact_saliency(state.params, images, labels, task.loss.value, activation, keep=state.masks)

    logits_of = lambda params, x: model.apply({'params': params}, x, train=False)
    loss_of = lambda params: task.loss.value(logits_of(params, images), labels)

    def curvature():
        # Softmax cross-entropy: the Gauss–Newton diagonal, as LeCun et al.; otherwise Hutchinson's estimate of the
        # true Hessian's diagonal, whose noise can make h_ii negative (and a large weight look unimportant).
        if task.loss.value is losses.softmax_cross_entropy:
            return gauss_newton_diagonal(logits_of, state.params, images)
        return hessian_diagonal(loss_of, state.params, key, probes)

    return {
        'obd': lambda: obd_saliency(curvature(), state.params),
        'taylor': lambda: taylor_saliency(loss_of, state.params),
        'magnitude': lambda: magnitude_saliency(state.params),
        'random': lambda: random_saliency(state.params, key),
    }[criterion]()


def member_saliency(
    criterion: str,
    task: train.Task,
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    probes: int = 64,
) -> Any:
    """`saliency` for every member of a stacked state (member i's key is fold_in(key, i)), stacked."""
    count = jax.tree.leaves(state.params)[0].shape[0]
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(count))
    if criterion == 'exact':  # chunked on the host: a loop over members, each vmapped over candidates
        return train.stack(
            [saliency(criterion, task, train.member(state, i), images, labels, keys[i]) for i in range(count)]
        )
    one = lambda s, k: saliency(criterion, task, s, images, labels, k, probes)
    return jax.jit(jax.vmap(one))(state, keys)


# ---- Prune, restore, rewind. ----


def _flatten_prunable(tree: Any, pattern: str) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """The prunable leaves of one member's tree as one flat vector, and the inverse (other leaves get None)."""
    flags = jax.tree.leaves(prunable(tree, pattern))
    leaves, structure = jax.tree.flatten(tree)
    chosen = [leaf for leaf, flag in zip(leaves, flags) if flag]
    sizes = np.cumsum([leaf.size for leaf in chosen])[:-1]

    def unflatten(vector):
        parts = iter(jnp.split(vector, sizes))
        return jax.tree.unflatten(
            structure, [next(parts).reshape(leaf.shape) if flag else None for leaf, flag in zip(leaves, flags)]
        )

    return jnp.concatenate([leaf.reshape(-1) for leaf in chosen]), unflatten


def prune_least_salient(
    state: train.TrainState, masks: Any, scores: Any, n: int | jax.Array, pattern: str = PRUNABLE
) -> train.TrainState:
    """The state with the `n` kept prunable weights of lowest score removed (one member; vmap it for a sweep).

    The removed weights' values and the masks before the removal go to `state.pruning`, so that `restore` can
    bring this group back. `n` may be traced.
    """
    flat_masks, unflatten = _flatten_prunable(masks, pattern)
    flat_scores, _ = _flatten_prunable(scores, pattern)
    order = jnp.argsort(jnp.where(flat_masks, flat_scores, jnp.inf), stable=True)
    chosen = jnp.zeros_like(flat_masks).at[order].set(jnp.arange(order.size) < n)
    removed = unflatten(chosen & flat_masks)
    new_masks = jax.tree.map(
        lambda mask, gone: mask if gone is None else mask & ~gone, masks, removed, is_leaf=lambda x: x is None
    )
    values = jax.tree.map(
        lambda w, gone: jnp.zeros_like(w) if gone is None else jnp.where(gone, w, 0),
        state.params,
        removed,
        is_leaf=lambda x: x is None,
    )
    # A copy: fit() donates the state leaf by leaf, so no two leaves may share a buffer.
    pruning = {**(state.pruning or {}), 'removed': values, 'previous_masks': jax.tree.map(jnp.copy, masks)}
    return apply_masks(state.replace(masks=new_masks, pruning=pruning))


def prune_to_fraction(
    state: train.TrainState, scores: Any, keep_fraction: float | jax.Array, pattern: str = PRUNABLE
) -> train.TrainState:
    """`prune_least_salient` down to `keep_fraction` of the prunable weights (never adding any back)."""
    kept, total = count_kept(state.masks, pattern)
    n = jnp.maximum(kept - jnp.round(keep_fraction * total).astype(kept.dtype), 0)
    return prune_least_salient(state, state.masks, scores, n, pattern)


def restore(state: train.TrainState) -> train.TrainState:
    """The lecture's rule: bring back the last removed group with its values from before the removal.

    Right after `prune_least_salient` this returns the previous params bit for bit; after retraining, the kept
    weights keep their retrained values. The restored weights' optimizer moments start from zero.
    """
    previous, values = state.pruning['previous_masks'], state.pruning['removed']
    returning = jax.tree.map(lambda old, new: old & ~new, previous, state.masks)
    params = jax.tree.map(lambda w, back, v: jnp.where(back, v, w), state.params, returning, values)
    return state.replace(params=params, masks=jax.tree.map(jnp.copy, previous))


def rewind(task: train.Task, state: train.TrainState) -> train.TrainState:
    """Lottery-ticket rewind (Frankle & Carbin 2019): the kept weights back at the rewind point, the removed ones at
    zero, a fresh optimizer state and step 0 (one member; vmap it for a sweep)."""
    params = _mask_tree(state.pruning['rewind'], state.masks)
    return state.replace(
        params=params, opt_state=task.make_optimizer(state.hparams).init(params), step=jnp.zeros_like(state.step)
    )


# ---- Neuron (structured) pruning. ----


def _next_layer(tree: Any, layer: int) -> str:
    return f'dense_{layer + 1}' if f'dense_{layer + 1}' in tree else 'output'


def _shrink(tree: Any, layer: int, keep: jax.Array) -> Any:
    """A params-like tree keeping only units `keep` [..., n] of hidden layer `layer`: dense_<layer>'s outputs, its
    batch norm, and the next layer's kernel rows (member axes lead)."""
    if tree is None:
        return None
    tree = {module: dict(leaves) for module, leaves in tree.items()}
    for module, axis in ((f'dense_{layer}', -1), (f'batch_norm_{layer}', -1), (_next_layer(tree, layer), -2)):
        for leaf, array in tree.get(module, {}).items():
            if array is None or (axis == -2 and leaf != 'kernel'):
                continue
            index = keep[..., None, :] if axis == -1 and array.ndim == keep.ndim + 1 else keep
            index = index[..., :, None] if axis == -2 else index
            tree[module][leaf] = jnp.take_along_axis(array, index, axis=axis)
    return tree


def remove_neurons(state: train.TrainState, layer: int, keep: jax.Array) -> train.TrainState:
    """The state with hidden layer `layer` cut to the units `keep` ([..., n] indices, member axes leading): params,
    batch norm, optimizer moments, masks and every params-like tree in `state.pruning` and `state.best` shrink. The
    network really gets smaller; the Task rebuilds the model from the new widths (one recompile)."""
    keep = jnp.sort(jnp.asarray(keep), axis=-1)
    shrink = lambda tree: _shrink(tree, layer, keep)
    like_params = lambda tree: train.map_like_params(shrink, tree, state.params)
    best = state.best
    if best is not None:
        best = {'params': shrink(best['params']), 'batch_stats': shrink(best['batch_stats'])}
    return state.replace(
        params=shrink(state.params),
        batch_stats=shrink(state.batch_stats) if state.batch_stats else state.batch_stats,
        opt_state=like_params(state.opt_state),
        masks=shrink(state.masks),
        pruning=None if state.pruning is None else like_params(state.pruning),
        best=best,
    )


def most_salient_units(scores: jax.Array, n: int) -> jax.Array:
    """The indices (sorted) of the `n` units of highest score in `scores` [..., width]."""
    return jnp.sort(jnp.argsort(-scores, axis=-1, stable=True)[..., :n], axis=-1)


def silent_units(params: Any, layer: int) -> jax.Array:
    """Which units of hidden layer `layer` have all outgoing weights at zero ([..., width] bools): removing them
    leaves the network's function unchanged."""
    outgoing = params[_next_layer(params, layer)]['kernel']
    return jnp.all(outgoing == 0, axis=-1)


def neuron_saliency_members(task: train.Task, state: train.TrainState, images, labels) -> Sequence[jax.Array]:
    """`exact_neuron_saliency` of every member of a stacked state: one [members, width] array per hidden layer."""

    def one(member_state):
        activation = getattr(task.model(member_state.hparams, member_state.params), 'activation', 'relu')
        return exact_neuron_saliency(member_state.params, images, labels, task.loss.value, activation)

    return jax.jit(jax.vmap(one))(state)
