"""Pruning: saliency criteria (a registry), prune / restore / rewind, neuron removal, and the schedules as epoch hooks.

Masks (`nets.masks`, in `TrainState.masks`) say which weights exist; the Task's `after_update`, `masks.apply_masks`,
keeps the removed weights and their optimizer moments at exactly zero. Only kernels are pruned (`masks.KERNELS`);
biases keep a mask of ones.

`TrainState.pruning` holds what the lecture's rule and a lottery-ticket rewind need, so that a checkpoint (and
`--resume`) carries it: {'rewind': the params to rewind to, 'removed': the last removed group's values (zero
elsewhere), 'previous_masks': the masks before that removal}, plus what a schedule adds ('ticket_masks', 'step').

Saliency: `CRITERIA` maps a name to one scoring function of one member's state on a validation batch, giving a
params-like tree of scores (small = unimportant): 'exact' (the loss increase when one weight alone is zeroed),
'obd' (LeCun et al. 1990; the Gauss–Newton diagonal for softmax cross-entropy, else Hutchinson's Hessian diagonal),
'taylor' |w·g|, 'snip' |w·g| at the initial weights (Lee et al. 2019), 'magnitude' |w| and 'random'. A new
criterion is one function and one registry entry.

Schedules (epoch hooks for `runner.train_variant`, on a sweep's stacked members): `ladder_hook` prunes down a
ladder of kept fractions, retraining between rungs; `lecture_hook` is the lecture's prune–retrain–restore rule;
`ticket_start` rewinds a mask to the initial weights (Frankle & Carbin 2019); `neuron_hook` removes whole units.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from nets import losses, train, units
from nets.activations import get_activation
from nets.masks import KERNELS, apply_masks, count_kept, kept_by_layer, kernel_vector, mask_tree, param_mask
from nets.registry import lookup


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


def kept_fraction(state: train.TrainState) -> np.ndarray:
    """The fraction of the prunable weights each member keeps."""
    kept, total = count_kept(state.masks)
    return np.asarray(kept) / total


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


# ---- The registry: one scoring function per criterion, of one member's state on a validation batch. ----


def _loss_of(task: train.Task, state: train.TrainState, images, labels):
    """(logits_of(params, x), loss_of(params)) of one member in evaluation mode."""
    model = task.model(state.hparams, state.params)
    logits_of = lambda params, x: model.apply({'params': params}, x, train=False)
    return logits_of, lambda params: task.loss.value(logits_of(params, images), labels)


def _exact(task, state, images, labels, key, probes):
    activation = getattr(task.model(state.hparams, state.params), 'activation', 'relu')
    return exact_saliency(state.params, images, labels, task.loss.value, activation, keep=state.masks)


def _obd(task, state, images, labels, key, probes):
    logits_of, loss_of = _loss_of(task, state, images, labels)
    # Softmax cross-entropy: the Gauss–Newton diagonal, as LeCun et al.; otherwise Hutchinson's estimate of the true
    # Hessian's diagonal, whose noise can make h_ii negative (and a large weight look unimportant).
    if task.loss.value is losses.softmax_cross_entropy:
        return obd_saliency(gauss_newton_diagonal(logits_of, state.params, images), state.params)
    return obd_saliency(hessian_diagonal(loss_of, state.params, key, probes), state.params)


def _taylor(task, state, images, labels, key, probes):
    return taylor_saliency(_loss_of(task, state, images, labels)[1], state.params)


def _snip(task, state, images, labels, key, probes):
    """SNIP's connection sensitivity (Lee et al. 2019): |w·g| at the initial weights (the rewind point) under the
    current masks, so that the ranking comes from before any training."""
    return taylor_saliency(_loss_of(task, state, images, labels)[1], mask_tree(state.pruning['rewind'], state.masks))


@dataclasses.dataclass(frozen=True)
class Criterion:
    """`score(task, state, images, labels, key, probes)`: one member's params-like tree of scores (small is pruned
    first). `compiled` is False for a criterion that loops over chunks on the host (a sweep scores its members one
    at a time)."""

    score: Callable[..., Any]
    compiled: bool = True


def _exact_size(task, state, images, labels, key, probes):
    """The size of the exact loss change, |ΔL|: the signed ΔL is dominated by its first-order term −g·w, whose sign on
    held-out images is noise, and ranking by it removes first the weights whose removal helps the batch most."""
    return jax.tree.map(jnp.abs, _exact(task, state, images, labels, key, probes))


CRITERIA: dict[str, Criterion] = {
    'exact': Criterion(_exact, compiled=False),
    'exact_size': Criterion(_exact_size, compiled=False),
    'obd': Criterion(_obd),
    'taylor': Criterion(_taylor),
    'snip': Criterion(_snip),
    'magnitude': Criterion(lambda task, state, images, labels, key, probes: magnitude_saliency(state.params)),
    'random': Criterion(lambda task, state, images, labels, key, probes: random_saliency(state.params, key)),
}


def saliency(
    criterion: str,
    task: train.Task,
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    probes: int = 64,
) -> Any:
    """The scores of one member's params by the criterion registered as `criterion`, on a validation batch."""
    return lookup(CRITERIA, criterion, 'pruning criterion').score(task, state, images, labels, key, probes)


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
    if not lookup(CRITERIA, criterion, 'pruning criterion').compiled:  # a host loop over members
        return train.stack(
            [saliency(criterion, task, train.member(state, i), images, labels, keys[i]) for i in range(count)]
        )
    one = lambda s, k: saliency(criterion, task, s, images, labels, k, probes)
    return jax.jit(jax.vmap(one))(state, keys)


# ---- Prune, restore, rewind. ----


def _flatten_prunable(tree: Any, pattern: str) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """The prunable leaves of one member's tree as one flat vector, and the inverse (other leaves get None)."""
    flags = jax.tree.leaves(param_mask(pattern)(tree))
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
    state: train.TrainState, masks: Any, scores: Any, n: int | jax.Array, pattern: str = KERNELS
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
    state: train.TrainState, scores: Any, keep_fraction: float | jax.Array, pattern: str = KERNELS
) -> train.TrainState:
    """`prune_least_salient` down to `keep_fraction` of the prunable weights (never adding any back)."""
    kept, total = count_kept(state.masks, pattern)
    n = jnp.maximum(kept - jnp.round(keep_fraction * total).astype(kept.dtype), 0)
    return prune_least_salient(state, state.masks, scores, n, pattern)


def prune_layerwise(state: train.TrainState, scores: Any, fractions: Mapping[str, float]) -> train.TrainState:
    """Each kernel of module `m` loses `fractions[m]` of its kept weights (rounded), those of lowest score: Frankle &
    Carbin's per-layer rate (one member; vmap it for a sweep)."""
    for module, fraction in fractions.items():
        pattern = f'^{module}/kernel$'
        kept, _ = count_kept(state.masks, pattern)
        state = prune_least_salient(state, state.masks, scores, jnp.round(fraction * kept).astype(kept.dtype), pattern)
    return state


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
    params = mask_tree(state.pruning['rewind'], state.masks)
    return state.replace(
        params=params, opt_state=task.make_optimizer(state.hparams).init(params), step=jnp.zeros_like(state.step)
    )


# ---- Neuron (structured) pruning. ----


def remove_neurons(state: train.TrainState, layer: int, keep: jax.Array) -> train.TrainState:
    """The state with hidden layer `layer` cut to the units `keep` ([..., n] indices, member axes leading): params,
    batch norm, optimizer moments, masks and every params-like tree in `state.pruning` and `state.best` shrink. The
    network really gets smaller; the Task rebuilds the model from the new widths (one recompile)."""
    keep = jnp.sort(jnp.asarray(keep), axis=-1)
    shrink = lambda tree: units.keep(tree, layer, keep)
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


silent_units = units.silent


def neuron_saliency_members(task: train.Task, state: train.TrainState, images, labels) -> Sequence[jax.Array]:
    """`exact_neuron_saliency` of every member of a stacked state: one [members, width] array per hidden layer."""

    def one(member_state):
        activation = getattr(task.model(member_state.hparams, member_state.params), 'activation', 'relu')
        return exact_neuron_saliency(member_state.params, images, labels, task.loss.value, activation)

    return jax.jit(jax.vmap(one))(state)


# ---- Schedules: epoch hooks and starting states for a sweep's stacked members. ----
# Each schedule starts from a trained (dense) sweep and keeps the variant's own hyper-parameters (its learning rate).
# A hook acts every `epochs_per_step` epochs; `measure(state)` (optional) adds its entries to that epoch's history
# row, as held-out curves that choose nothing.

EpochHook = Callable[[int, train.TrainState, list], 'train.TrainState | None']


def _copy(tree: Any) -> Any:
    """Fresh buffers: fit() donates the state it trains, and a variant must not consume another's."""
    return jax.tree.map(jnp.copy, tree)


def start_from(trained: train.TrainState, state: train.TrainState) -> train.TrainState:
    """A copy of the trained sweep with `state`'s hyper-parameters and its fresh optimizer state and step: the
    schedule that retrains may be another optimizer chain than the one that trained."""
    return _copy(trained).replace(hparams=state.hparams, opt_state=state.opt_state, step=state.step)


def _prune_to(state: train.TrainState, scores: Any, keep_fraction: float) -> train.TrainState:
    return jax.jit(jax.vmap(prune_to_fraction, in_axes=(0, 0, None)))(state, scores, keep_fraction)


def ladder_start(trained: train.TrainState, state: train.TrainState, scores: Any, keep_fraction: float):
    """The trained sweep pruned to the ladder's first rung, its masks kept as the ticket's until a later rung."""
    pruned = jax.vmap(prune_to_fraction, in_axes=(0, 0, None))(start_from(trained, state), scores, keep_fraction)
    return pruned.replace(pruning={**pruned.pruning, 'ticket_masks': _copy(pruned.masks)})


def ladder_hook(
    task: train.Task,
    criterion: str,
    keep_fractions: Sequence[float],
    *,
    epochs_per_rung: int,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    probes: int = 64,
    ticket_fraction: float | None = None,
    measure: Callable[[train.TrainState], Mapping[str, Any]] | None = None,
) -> EpochHook:
    """After each rung's retraining: record the rung, its kept fractions (overall and per layer) and `measure`, keep
    the masks as 'ticket_masks' at `ticket_fraction`, then prune to the next rung by `criterion` (scored on
    `images`, `labels`, with key fold_in(key, epoch))."""

    def hook(epoch, state, history):
        if epoch % epochs_per_rung:
            return None
        rung = epoch // epochs_per_rung - 1
        row = history[-1]
        row['rung'] = rung
        row['kept_fraction'] = kept_fraction(state).tolist()
        row |= dict(measure(state)) if measure is not None else {}
        for layer, kept in kept_by_layer(state.masks).items():
            row[f'kept_{layer.split("/")[0]}'] = kept.tolist()
        if ticket_fraction is not None and np.isclose(keep_fractions[rung], ticket_fraction):
            state = state.replace(pruning={**state.pruning, 'ticket_masks': _copy(state.masks)})
        if rung + 1 == len(keep_fractions):
            return state
        scores = member_saliency(criterion, task, state, images, labels, jax.random.fold_in(key, epoch), probes)
        return _prune_to(state, scores, keep_fractions[rung + 1])

    return hook


def _step_counts(state: train.TrainState, step: Any) -> jax.Array:
    """How many weights each member's `step` fraction of its kept weights is."""
    kept, _ = count_kept(state.masks)
    return jnp.round(step * kept).astype(kept.dtype)


def lecture_start(trained: train.TrainState, state: train.TrainState, scores: Any, step: float):
    """The trained sweep with `step` of its weights pruned: the lecture rule's first removal."""
    start_state = start_from(trained, state)
    members = len(jax.tree.leaves(start_state.params)[0])
    pruned = jax.vmap(prune_least_salient)(start_state, start_state.masks, scores, _step_counts(start_state, step))
    return pruned.replace(pruning={**pruned.pruning, 'step': jnp.full((members,), step)})


def lecture_hook(
    task: train.Task,
    criterion: str,
    *,
    rounds: int,
    epochs_per_round: int,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    reference_error: np.ndarray,
    tolerance: float,
    probes: int = 64,
) -> EpochHook:
    """The lecture's rule after each round's retraining: a member whose validation error rose above its
    `reference_error` (the trained net's) + `tolerance` gets its last removed group restored and its step halved;
    then every member prunes its step's fraction of what is left, by `criterion`. After the last round's restore it
    does nothing more: epochs beyond `rounds` rounds retrain the final masks."""

    def hook(epoch, state, history):
        if epoch % epochs_per_round or epoch > rounds * epochs_per_round:  # after the last round: retraining only
            return None
        failed = 1 - np.asarray(history[-1]['val_accuracy']) > reference_error + tolerance
        state = train.where_members(jnp.asarray(failed), jax.vmap(restore)(state), state)
        step = jnp.where(jnp.asarray(failed), state.pruning['step'] / 2, state.pruning['step'])
        state = state.replace(pruning={**state.pruning, 'step': step})
        history[-1]['restored'] = failed.astype(int).tolist()
        history[-1]['kept_fraction'] = kept_fraction(state).tolist()
        history[-1]['step'] = np.asarray(step).tolist()
        if epoch == rounds * epochs_per_round:
            return state
        scores = member_saliency(criterion, task, state, images, labels, jax.random.fold_in(key, epoch), probes)
        return jax.jit(jax.vmap(prune_least_salient))(state, state.masks, scores, _step_counts(state, step))

    return hook


def imp_round(task: train.Task, state: train.TrainState, fractions: Mapping[str, float]) -> train.TrainState:
    """One round of iterative magnitude pruning with rewinding (Frankle & Carbin 2019) on every member: each layer
    loses `fractions[module]` of its kept weights, the smallest in magnitude, and the kept weights go back to the
    rewind point (`start`'s: the initial weights) with a fresh optimizer at step 0."""
    one = lambda member: rewind(task, prune_layerwise(member, magnitude_saliency(member.params), fractions))
    return jax.jit(jax.vmap(one))(state)


def imp_fractions(params: Mapping[str, Any], fraction: float) -> dict[str, float]:
    """Frankle & Carbin's per-layer rates for `imp_round`: `fraction` of every layer's kept weights a round, half
    of it for the output layer."""
    return {module: fraction / 2 if module == 'output' else fraction for module in params}


def imp_start(task: train.Task, trained: train.TrainState, state: train.TrainState, fractions: Mapping[str, float]):
    """The trained sweep after its first round: pruned by magnitude, rewound."""
    return imp_round(task, start_from(trained, state), fractions)


def imp_hook(
    task: train.Task,
    fractions: Mapping[str, float],
    *,
    rounds: int,
    epochs_per_round: int,
    measure: Callable[[train.TrainState], Mapping[str, Any]] | None = None,
) -> EpochHook:
    """After each round's training: record the round, its kept fraction and `measure`, then `imp_round`; the last
    of `rounds` rounds is only recorded (its masks are the ticket's)."""

    def hook(epoch, state, history):
        if epoch % epochs_per_round:
            return None
        round_ = epoch // epochs_per_round - 1
        history[-1] |= {'round': round_, 'kept_fraction': kept_fraction(state).tolist()}
        history[-1] |= dict(measure(state)) if measure is not None else {}
        return state if round_ + 1 == rounds else imp_round(task, state, fractions)

    return hook


def ticket_start(task: train.Task, trained: train.TrainState, state: train.TrainState, masks: Any, fresh: bool):
    """A lottery ticket's start: `masks` on the trained sweep's initial weights (its rewind point), or with
    `fresh`, on `state`'s own fresh random weights (the control), with a fresh optimizer at step 0."""
    ticket = _copy(trained).replace(hparams=state.hparams, masks=_copy(masks))
    if fresh:
        ticket = ticket.replace(pruning={**ticket.pruning, 'rewind': _copy(state.params)})
    return jax.vmap(lambda member: rewind(task, member))(ticket)


def cut_neurons(task: train.Task, state: train.TrainState, images, labels, widths: Sequence[int]):
    """Every hidden layer cut to `widths` units, keeping each member's most salient by the exact unit saliency."""
    scores = neuron_saliency_members(task, state, images, labels)
    for layer, width in enumerate(widths):
        state = remove_neurons(state, layer, most_salient_units(scores[layer], width))
    return state


def neuron_start(task: train.Task, trained: train.TrainState, state: train.TrainState, images, labels, widths):
    """The trained sweep cut to `widths`; for the like-state of a resume (other widths), only its structure."""
    if task.architecture_of(state.params) != task.architecture_of(trained.params):
        return start(state)
    return cut_neurons(task, start_from(trained, state), images, labels, widths)


def neuron_hook(
    task: train.Task,
    widths: Sequence[Sequence[int]],
    *,
    epochs_per_cut: int,
    images: jax.Array,
    labels: jax.Array,
    measure: Callable[[train.TrainState], Mapping[str, Any]] | None = None,
) -> EpochHook:
    """After each cut's retraining: record the cut and `measure`, then cut to the next `widths`."""

    def hook(epoch, state, history):
        if epoch % epochs_per_cut:
            return None
        cut = epoch // epochs_per_cut - 1
        history[-1]['cut'] = cut
        history[-1] |= dict(measure(state)) if measure is not None else {}
        if cut + 1 == len(widths):
            return state
        return cut_neurons(task, state, images, labels, widths[cut + 1])

    return hook


# ---- Reading a pruned sweep: how criteria agree, the rungs of a ladder, what a neuron cut buys.


def first_order_change(task: train.Task, state: train.TrainState, images, labels) -> Any:
    """−g·w for every weight of every member of a stacked state: the first-order term of the loss change when w
    alone is zeroed (the part of the exact saliency whose sign is noise on held-out images)."""

    def one(member):
        loss_of = _loss_of(task, member, images, labels)[1]
        return jax.tree.map(lambda w, g: -w * g, member.params, jax.grad(loss_of)(member.params))

    return jax.jit(jax.vmap(one))(state)


def rank_scores(task: train.Task, state: train.TrainState, images, labels, key, criteria, probes: int = 64) -> dict:
    """The signed exact saliency ('exact') and each of `criteria`'s scores for every member of `state`: what
    `rank_agreement` compares ('exact_size' is the exact one's size, not scored again)."""
    signed = member_saliency('exact', task, state, images, labels, key)
    score = lambda c: member_saliency(c, task, state, images, labels, key, probes)
    return {'exact': signed} | {c: jax.tree.map(abs, signed) if c == 'exact_size' else score(c) for c in criteria}


def rank_agreement(scores: Mapping[str, Any], reference: Callable = lambda exact: exact) -> dict[str, float]:
    """Spearman's ρ between each criterion's kernel scores (stacked over members) and `reference` of the 'exact'
    ones, per member, mean over members."""
    exact = jax.tree.map(reference, scores['exact'])
    count = len(jax.tree.leaves(exact)[0])
    rho = lambda c, i: scipy.stats.spearmanr(kernel_vector(exact, i), kernel_vector(scores[c], i)).statistic
    return {c: float(np.mean([rho(c, i) for i in range(count)])) for c in scores if c != 'exact'}


def ladder_rungs(runs: Mapping[str, Mapping]) -> dict:
    """The rungs `ladder_hook` recorded in a variant's runs: kept fraction, validation and test error and per-layer
    kept fraction, each [members][rungs]."""
    rows = [[row for row in run['history'] if 'rung' in row] for run in runs.values()]
    pick = lambda key: np.array([[row[key] for row in member] for member in rows], dtype=np.float64).tolist()
    layers = [key for key in rows[0][0] if key.startswith('kept_') and key != 'kept_fraction']
    return {
        'kept': pick('kept_fraction'),
        'test': pick('test_error'),
        'val': (1 - np.array(pick('val_accuracy'))).tolist(),
        'layers': {key[len('kept_') :]: pick(key) for key in layers},
    }


def rung_errors(ladder: Mapping[str, Any], rung: int | None) -> dict:
    """{seed: test error at `rung`} of a ladder (`ladder_rungs` with its 'seeds'; NaN for every seed when no rung
    was chosen): what a claim pairs."""
    pick = lambda row: float(row[rung]) if rung is not None else float('nan')
    return {seed: pick(row) for seed, row in zip(ladder['seeds'], ladder['test'])}


def rung_compressions(rungs: Mapping[str, Any], bound: float) -> dict[str, float]:
    """A ladder's rungs (`ladder_rungs`), labelled by their mean kept fraction and valued by their compression where
    the mean validation error is at most `bound` (else 0), beside 'none' (1, the dense net): the largest value is
    the operating point, the most compressed rung within the bound."""
    kept, val = np.mean(rungs['kept'], 0), np.mean(rungs['val'], 0)
    return {'none': 1.0} | {f'{k:.4f}': 1 / k if v <= bound + 1e-9 else 0.0 for k, v in zip(kept, val)}


def inference_seconds(task: train.Task, hparams, widths, input_shape, images, repeats: int) -> float:
    """The best of `repeats` timings of one jitted evaluation-mode pass of a net of hidden `widths` over `images`."""
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), input_shape, {'hidden_widths': tuple(widths)})
    model = task.model(hparams, state.params)
    apply = jax.jit(lambda params, x: model.apply({'params': params}, x, train=False))
    jax.block_until_ready(apply(state.params, images))
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready(apply(state.params, images))
        times.append(time.perf_counter() - begin)
    return float(min(times))


def neuron_cuts(runs: Mapping[str, Mapping], task: train.Task, hparams, widths, cuts, images, repeats: int):
    """Per cut that `neuron_hook` recorded: its widths, kept weights, mean validation and test error, and the timed
    inference speed-up on `images` over the net of hidden `widths`."""
    rows = [[row for row in run['history'] if 'cut' in row] for run in runs.values()]
    input_shape = images.shape[1:]
    dense_seconds = inference_seconds(task, hparams, widths, input_shape, images, repeats)
    table = []
    for cut, cut_widths in enumerate(cuts):
        sizes = (input_shape[0], *cut_widths, 10)
        seconds = inference_seconds(task, hparams, cut_widths, input_shape, images, repeats)
        table.append(
            {
                'widths': list(cut_widths),
                'weights': int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))),
                'val_error': float(np.mean([1 - member[cut]['val_accuracy'] for member in rows])),
                'test_error': float(np.mean([member[cut]['test_error'] for member in rows])),
                'seconds': seconds,
                'speedup': dense_seconds / seconds,
            }
        )
    return table
