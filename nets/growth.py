"""Growing a network: pure transforms of the whole TrainState that add hidden units, the ways to initialise them,
and a plateau rule that decides when.

Adding units changes shapes, so training goes on with one recompile: the Task rebuilds the model from the new
widths (`Task.architecture_of`), and a checkpoint records them so that a resumed run restores the grown state.
To keep recompiles few, `grow` can round a layer's width up to a shape bucket (a power of two): the spare units
are inactive, held at exactly zero by masks (`TrainState.masks`, kept by `nets.pruning.apply_masks` after every
update), and a later growth activates them without a new shape. A width of 8 grown to 128 then compiles 5
programs instead of one per growth, at the price of at most twice the active width's arithmetic.

The new units' weights come from a strategy (`STRATEGIES`): the lecture's four train the new units alone, the old
ones frozen, for a few scanned steps on a random subsample, on the examples of highest loss, on a random subset of
the inputs, or from K random starts (vmapped, the best kept); the baselines are plain random weights, zero
outgoing weights and a Net2Net split, the last two leaving the network's function unchanged.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nets import train, units as hidden_units
from nets.initializers import get_initializer
from nets.registry import lookup

BUCKETS = ('power_of_two', 'exact')


@flax.struct.dataclass
class NewUnits:
    """The weights of n new units of a hidden layer: incoming [..., fan_in, n], bias [..., n] and outgoing
    [..., n, fan_out]; `outgoing_scale` [..., width] (or None) multiplies the existing units' outgoing weights (a
    Net2Net split hands part of its source units' outgoing weights to their copies)."""

    incoming: jax.Array
    bias: jax.Array
    outgoing: jax.Array
    outgoing_scale: jax.Array | None = None


def add_neurons(
    state: train.TrainState, layer: int, n: int, new_in: Any, new_out: Any, new_bias: Any = None
) -> train.TrainState:
    """The state with `n` units added to hidden layer `layer` (0-based): their incoming weights `new_in`
    [..., fan_in, n], biases `new_bias` [..., n] (default zero), outgoing weights `new_out` [..., n, fan_out];
    batch norm (if any) gets scale 1, offset 0, running mean 0 and variance 1; every optimizer moment that mirrors
    the params gets zeros, and the masks (if any) ones. With zero `new_out` the network computes the same function.
    """
    following = hidden_units.next_layer(state.params, layer)

    def params_fill(module, leaf, array, axis):
        if module == f'dense_{layer}':
            if leaf == 'kernel':
                return new_in
            return hidden_units.new_entries(array, n, axis, 0.0) if new_bias is None else new_bias
        if module == following:
            return new_out
        return hidden_units.new_entries(array, n, axis, 1.0 if leaf == 'scale' else 0.0)  # batch norm

    zeros = lambda module, leaf, array, axis: hidden_units.new_entries(array, n, axis, 0.0)
    ones = lambda module, leaf, array, axis: hidden_units.new_entries(array, n, axis, 1.0)
    stats_fill = lambda module, leaf, array, axis: hidden_units.new_entries(
        array, n, axis, 1.0 if leaf == 'var' else 0.0
    )

    params = hidden_units.widen(state.params, layer, params_fill)
    best = state.best
    if best is not None:
        best = {
            'params': hidden_units.widen(best['params'], layer, params_fill),
            'batch_stats': hidden_units.widen(best['batch_stats'], layer, stats_fill),
        }
    return state.replace(
        params=params,
        batch_stats=hidden_units.widen(state.batch_stats, layer, stats_fill),
        opt_state=train.map_like_params(
            lambda moments: hidden_units.widen(moments, layer, zeros), state.opt_state, state.params
        ),
        masks=hidden_units.widen(state.masks, layer, ones),
        best=best,
    )


# ---------------------------------------------------------------------------------------------------------------
# Shape buckets: spare, masked units that a later growth activates without a new shape.


def capacity_for(width: int, max_width: int, bucket: str = 'power_of_two') -> int:
    """The width a layer of `width` active units is given: the next power of two (at most `max_width`), or exact."""
    lookup(dict.fromkeys(BUCKETS), bucket, 'bucket')
    if bucket == 'exact':
        return width
    return max(width, min(max_width, 2 ** math.ceil(math.log2(width))))


def place_units(state: train.TrainState, layer: int, start: Any, new: NewUnits) -> train.TrainState:
    """The state with `units` written into units [start, start + n) of hidden layer `layer` (same shapes; `start`
    may be traced): their weights, fresh batch norm (scale 1, offset 0, mean 0, variance 1), zero optimizer moments;
    `new.outgoing_scale` multiplies the existing units' outgoing weights first."""
    n = new.bias.shape[-1]
    dense, following = f'dense_{layer}', hidden_units.next_layer(state.params, layer)

    def params_values(module, leaf):
        if module == dense:
            return new.incoming if leaf == 'kernel' else new.bias
        if module == following:
            return new.outgoing
        return 1.0 if leaf == 'scale' else 0.0

    params = state.params
    if new.outgoing_scale is not None:
        kernel = params[following]['kernel']
        scale = new.outgoing_scale[..., :, None].astype(kernel.dtype)
        params = {**params, following: {**params[following], 'kernel': kernel * scale}}
    write = lambda tree, values: hidden_units.write(tree, layer, start, n, values)
    return state.replace(
        params=write(params, params_values),
        batch_stats=write(state.batch_stats, lambda module, leaf: 1.0 if leaf == 'var' else 0.0)
        if state.batch_stats
        else state.batch_stats,
        opt_state=train.map_like_params(
            lambda moments: write(moments, lambda module, leaf: 0.0), state.opt_state, state.params
        ),
    )


def grow(
    state: train.TrainState, layer: int, units: NewUnits, capacity: int | None = None, growing: Any = None
) -> train.TrainState:
    """The state with `units` added after the active units of hidden layer `layer`: into spare units where there
    are enough, else into a layer widened to `capacity` (default: exactly the new width), whose units beyond the
    active ones are masked at zero. Works on one state or a stacked sweep alike, whose members may have different
    active counts; `growing` ([members] bools, default all) says which members take their new units (the others
    keep their state, only widened). Compiles once per shape."""
    active = hidden_units.active_units(state, layer)
    growing = np.ones(active.shape, bool) if growing is None else np.asarray(growing, bool)
    n = units.bias.shape[-1]
    after = active + n * growing
    width = hidden_units.width_of(state.params, layer)
    capacity = max(capacity or 0, int(np.max(after)), width)
    masked = bool(np.any(after < capacity)) or state.masks is not None
    active, growing = jnp.asarray(active, jnp.int32), jnp.asarray(growing)
    return _grow(state, units, active, growing, layer=layer, capacity=capacity, masked=masked)


@functools.partial(jax.jit, static_argnames=('layer', 'capacity', 'masked'))
def _grow(state, units, active, growing, *, layer, capacity, masked):
    width = hidden_units.width_of(state.params, layer)
    if capacity > width:
        kernel = state.params[f'dense_{layer}']['kernel']
        outgoing = state.params[hidden_units.next_layer(state.params, layer)]['kernel']
        extra = capacity - width
        state = add_neurons(
            state,
            layer,
            extra,
            jnp.zeros(kernel.shape[:-1] + (extra,), kernel.dtype),
            jnp.zeros(outgoing.shape[:-2] + (extra, outgoing.shape[-1]), outgoing.dtype),
        )
        if units.outgoing_scale is not None:
            pad = jnp.ones(units.outgoing_scale.shape[:-1] + (extra,), units.outgoing_scale.dtype)
            units = units.replace(outgoing_scale=jnp.concatenate([units.outgoing_scale, pad], -1))
    place = functools.partial(place_units, layer=layer)
    placed = (
        jax.vmap(place)(state, start=active, new=units) if state.step.ndim else place(state, start=active, new=units)
    )
    # A member that does not grow keeps its (widened) state.
    keep = lambda new, old: jnp.where(growing.reshape(growing.shape + (1,) * (new.ndim - growing.ndim)), new, old)
    state = jax.tree.map(keep, placed, state)
    n = units.bias.shape[-1]
    return state.replace(masks=hidden_units.unit_masks(state.params, layer, active + n * growing)) if masked else state


# ---------------------------------------------------------------------------------------------------------------
# Strategies: each returns the n new units' weights for one member (the caller vmaps over a sweep's members).


def _layer_initializer(task: train.Task, state: train.TrainState):
    model = task.model(state.hparams, state.params)
    return get_initializer(model.kernel_init, std=model.init_std, scale=model.init_scale)


def random_units(key, state, *, task, layer, n, active=None, images=None, labels=None) -> NewUnits:
    """Plain random units: incoming and outgoing weights from the model's kernel initializer, zero biases."""
    del active, images, labels
    kernel = state.params[f'dense_{layer}']['kernel']
    outgoing = state.params[hidden_units.next_layer(state.params, layer)]['kernel']
    init = _layer_initializer(task, state)
    in_key, out_key = jax.random.split(key)
    width = kernel.shape[-1] + n  # the initializer's fan of a layer this wide
    return NewUnits(
        incoming=init(in_key, (kernel.shape[-2], width))[:, :n],
        bias=jnp.zeros((n,), kernel.dtype),
        outgoing=init(out_key, (width, outgoing.shape[-1]))[:n],
    )


def zero_outgoing_units(key, state, *, task, layer, n, active=None, images=None, labels=None) -> NewUnits:
    """Random incoming weights and zero outgoing ones: the network's function is unchanged, bit for bit."""
    units = random_units(key, state, task=task, layer=layer, n=n)
    return units.replace(outgoing=jnp.zeros_like(units.outgoing))


def net2net_units(key, state, *, task, layer, n, active, images=None, labels=None) -> NewUnits:
    """A Net2Net split (Chen et al. 2016): each new unit copies a random active unit's incoming weights and bias,
    and the copies and their source share its outgoing weights in random positive parts that sum to one, so the
    function is unchanged (up to rounding) while the unequal parts break the copies' symmetry. Without batch norm."""
    del task, images, labels
    kernel = state.params[f'dense_{layer}']['kernel']
    bias = state.params[f'dense_{layer}']['bias']
    outgoing = state.params[hidden_units.next_layer(state.params, layer)]['kernel']
    width = kernel.shape[-1]
    choice_key, replace_key, share_key, new_share_key = jax.random.split(key, 4)
    scores = jnp.where(jnp.arange(width) < active, jax.random.uniform(choice_key, (width,)), -1.0)
    with_replacement = jax.random.randint(replace_key, (n,), 0, active)
    sources = jnp.where(n <= active, jax.lax.top_k(scores, n)[1], with_replacement) if n <= width else with_replacement
    share = jax.random.uniform(share_key, (width,), minval=0.5, maxval=1.5)
    new_share = jax.random.uniform(new_share_key, (n,), minval=0.5, maxval=1.5)
    total = share + jax.ops.segment_sum(new_share, sources, width)
    return NewUnits(
        incoming=kernel[:, sources],
        bias=bias[sources],
        outgoing=outgoing[sources] * (new_share / total[sources])[:, None],
        outgoing_scale=share / total,  # exactly 1 where a unit is no source
    )


def _per_example_loss(task: train.Task, state: train.TrainState, images, labels) -> jax.Array:
    return jax.vmap(lambda x, y: train.evaluate(task, state, x[None], y[None])['loss'])(images, labels)


def _random_sample(key, task, state, images, labels, size: int, pool_size: int):
    """`size` training examples drawn at random."""
    index = jax.random.choice(key, images.shape[0], (size,), replace=False)
    return images[index], labels[index]


def _highest_loss_sample(key, task, state, images, labels, size: int, pool_size: int):
    """The `size` examples of highest loss under the current network among a random pool of `pool_size`."""
    pool = jax.random.choice(key, images.shape[0], (max(size, min(pool_size, images.shape[0])),), replace=False)
    losses = _per_example_loss(task, state, images[pool], labels[pool])
    index = pool[jax.lax.top_k(losses, size)[1]]
    return images[index], labels[index]


# How trained_units picks the examples it trains new units on.
SELECTIONS = {'random': _random_sample, 'highest_loss': _highest_loss_sample}


def _sample(key, task, state, images, labels, size: int, selection: str, pool_size: int):
    """`size` training examples chosen by the selection registered as `selection`."""
    return lookup(SELECTIONS, selection, 'selection')(key, task, state, images, labels, size, pool_size)


def trained_units(
    key,
    state,
    *,
    task,
    layer,
    n,
    active=None,
    images,
    labels,
    selection: str = 'random',
    input_fraction: float = 1.0,
    starts: int = 1,
    sample_size: int = 512,
    pool_size: int = 8192,
    steps: int = 50,
    learning_rate: float = 0.01,
) -> NewUnits:
    """New units trained alone, the network's other weights frozen: `steps` full-batch Adam steps (one scan) on
    `sample_size` examples chosen by `selection` ('random', or 'highest_loss' under the current network), starting
    from random incoming and zero outgoing weights; with `input_fraction` < 1 each unit sees only a random subset
    of the layer's inputs; with `starts` > 1 that many starts train at once (vmapped) and the lowest final loss on
    the sample wins. The model runs in evaluation mode (no dropout, running batch-norm statistics)."""
    del active
    lookup(SELECTIONS, selection, 'selection')
    sample_key, input_key, start_key = jax.random.split(key, 3)
    x, y = _sample(sample_key, task, state, images, labels, sample_size, selection, pool_size)
    fan_in = state.params[f'dense_{layer}']['kernel'].shape[-2]
    input_mask = jax.random.bernoulli(input_key, input_fraction, (fan_in, n)) if input_fraction < 1 else 1.0
    optimizer = optax.adam(learning_rate)

    frozen = state.replace(opt_state=None, masks=None, best=None)  # only what the model reads

    def loss(units):
        grown = add_neurons(frozen, layer, n, units.incoming * input_mask, units.outgoing, units.bias)
        return train.evaluate(task, grown, x, y)['loss']

    def train_from(start):
        units = zero_outgoing_units(start, state, task=task, layer=layer, n=n)

        def step(carry, _):
            units, opt_state = carry
            grads = jax.grad(loss)(units)
            updates, opt_state = optimizer.update(grads, opt_state, units)
            return (optax.apply_updates(units, updates), opt_state), None

        (units, _), _ = jax.lax.scan(step, (units, optimizer.init(units)), length=steps)
        return units.replace(incoming=units.incoming * input_mask), loss(units)

    # Start i's key does not depend on `starts`: the best of K includes the single start.
    start_keys = jax.vmap(lambda i: jax.random.fold_in(start_key, i))(jnp.arange(starts))
    units, final_loss = jax.vmap(train_from)(start_keys)
    return jax.tree.map(lambda leaf: leaf[jnp.argmin(final_loss)], units)


STRATEGIES: dict[str, Callable[..., NewUnits]] = {
    # The lecture's four: train the new units alone on ...
    'random_subsample': functools.partial(trained_units, selection='random'),  # ... a random subsample
    'highest_loss': functools.partial(trained_units, selection='highest_loss'),  # ... the worst-fit examples
    'random_inputs': functools.partial(trained_units, input_fraction=0.25),  # ... a random subset of the inputs
    'best_of_k': functools.partial(trained_units, starts=8),  # ... from K starts, keeping the best
    # Baselines.
    'random': random_units,
    'zero_outgoing': zero_outgoing_units,  # function-preserving
    'net2net': net2net_units,  # function-preserving (up to rounding)
}


def get_strategy(name: str, **options) -> Callable[..., NewUnits]:
    """The strategy registered as `name`, with `options` (e.g. steps=30, starts=4) bound."""
    strategy = lookup(STRATEGIES, name, 'growth strategy')
    return functools.partial(strategy, **options) if options else strategy


def forward_flops(widths: Sequence[int], examples: int) -> float:
    """FLOPs of an MLP's forward pass over `examples` (layer sizes `widths`, input first): 2 a multiply-add; biases
    and activations are negligible."""
    return 2.0 * examples * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def strategy_flops(name: str, widths: Sequence[int], **options) -> float:
    """The FLOPs of one growth by strategy `name` with `options` (as `get_strategy` binds them) for one member of a
    net of `widths` (the grown ones): the new units' training (three forward passes a step, for every start) and,
    choosing the worst-fit examples, the pass that scores the pool; 0 for a strategy that trains nothing."""
    strategy = get_strategy(name, **options)
    if getattr(strategy, 'func', strategy) is not trained_units:
        return 0.0
    parameters = inspect.signature(trained_units).parameters.values()
    bound = {p.name: p.default for p in parameters if p.default is not p.empty} | strategy.keywords
    flops = bound['starts'] * bound['steps'] * 3 * forward_flops(widths, bound['sample_size'])
    if bound['selection'] == 'highest_loss':
        flops += forward_flops(widths, bound['pool_size'])
    return flops


# ---------------------------------------------------------------------------------------------------------------
# When to grow.


def plateaued(values: Sequence[float], window: int, tolerance: float) -> bool:
    """True when the best of the last `window` values improves on the value before them by less than `tolerance`,
    relatively (a loss, lower is better); False while there are not yet window + 1 values."""
    if len(values) <= window:
        return False
    reference = float(values[-window - 1])
    return reference - float(min(values[-window:])) < tolerance * abs(reference)


def growth_hook(
    task: train.Task,
    strategy: Callable[..., NewUnits],
    *,
    layer: int,
    max_width: int,
    units_per_growth: int,
    window: int,
    tolerance: float,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    bucket: str = 'power_of_two',
    monitor: str = 'train_loss',
    probe: tuple[jax.Array, jax.Array] | None = None,
) -> Callable[[int, train.TrainState, list[dict]], train.TrainState]:
    """An epoch hook (`runner.train_variant(on_epoch_end=...)`) that grows hidden layer `layer` of each member by
    `units_per_growth` units (up to `max_width`) whenever that member's own `monitor` has `plateaued` over the
    epochs since its last growth. The state is stacked, as runner.train_variant's always is. The members share one
    shape (a bucket wide enough for the widest) and each keeps its own active units under its masks. The new units
    come from `strategy` (one call per member, vmapped and jitted), trained on `images` and `labels`. When members
    that grow at once have room for different numbers of units (near `max_width`), each takes the smallest of them.

    It adds to the epoch's history row, per member: width (active units during the epoch), units_added, and with a
    `probe` (images, labels) the probe's loss before and after the growth, so that a report can show whether the
    loss jumps at a growth event; and shared: capacity (allocated units) and growth_seconds (the strategy and the
    state transform of every member, compile included).
    """
    capacity_for(1, 1, bucket)  # checks the name

    @functools.partial(jax.jit, static_argnames='n')
    def new_units(keys, state, active, images, labels, n):
        call = lambda k, s, a: strategy(k, s, task=task, layer=layer, n=n, active=a, images=images, labels=labels)
        return jax.vmap(call)(keys, state, active)

    @jax.jit
    def probe_loss(state, images, labels):
        loss = lambda s: train.evaluate(task, s, images, labels)['loss']
        return jax.vmap(loss)(state)

    def member_plateaued(history: list[dict], member: int) -> bool:
        # The window starts at the member's last growth: its value, measured before that growth, is the reference.
        last = max((i for i, r in enumerate(history) if 'units_added' in r and r['units_added'][member]), default=0)
        return plateaued([r[monitor][member] for r in history[last:]], window, tolerance)

    def hook(epoch: int, state: train.TrainState, history: list[dict]) -> train.TrainState:
        row = history[-1]
        active = hidden_units.active_units(state, layer)
        growing = np.array([member_plateaued(history, m) for m in range(len(active))]) & (active < max_width)
        row |= {
            'width': active.tolist(),
            'capacity': hidden_units.width_of(state.params, layer),
            'units_added': np.zeros(active.shape, int).tolist(),
            'growth_seconds': 0.0,
        }
        if probe is not None:
            row['probe_loss'] = row['probe_loss_after_growth'] = np.asarray(probe_loss(state, *probe)).tolist()
        if not growing.any():
            return state
        started = time.perf_counter()
        n = int(min(units_per_growth, np.min(max_width - active[growing])))
        keys = jax.random.split(jax.random.fold_in(key, epoch), len(active))
        units = new_units(keys, state, jnp.asarray(active, jnp.int32), images, labels, n=n)
        capacity = capacity_for(int(np.max(active + n * growing)), max_width, bucket)
        state = jax.block_until_ready(grow(state, layer, units, capacity, growing))
        row |= {'units_added': (n * growing).tolist(), 'growth_seconds': time.perf_counter() - started}
        if probe is not None:
            row['probe_loss_after_growth'] = np.asarray(probe_loss(state, *probe)).tolist()
        return state

    return hook
