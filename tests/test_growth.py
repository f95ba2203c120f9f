"""Growth: add_neurons keeps the network's function when the new unit's outgoing weights are zero, the grown state
trains on (one recompile, the model rebuilt from the new widths), and a grown run resumes bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import growth, masks, runner, train, units


@pytest.fixture(scope='module')
def data():
    return teacher_data(5, 512, 128)


def new_weights(state, layer, n, key=0):
    """Random incoming and zero outgoing weights for n new units of hidden layer `layer` (member axes lead)."""
    kernel = state.params[f'dense_{layer}']['kernel']
    following = state.params.get(f'dense_{layer + 1}', state.params['output'])['kernel']
    new_in = 0.05 * jax.random.normal(jax.random.PRNGKey(key), kernel.shape[:-1] + (n,))
    new_out = jnp.zeros(following.shape[:-2] + (n, following.shape[-1]))
    return new_in, new_out


@pytest.mark.parametrize('optimizer, batch_norm', [('adam', None), ('momentum', 'before'), ('adam', 'after')])
def test_a_unit_with_zero_outgoing_weights_leaves_the_function_unchanged_and_trains(data, optimizer, batch_norm):
    task, hparams = mlp_task(optimizer, 1e-2, 64, hidden_widths=(16, 8), batch_norm=batch_norm)
    state, _ = train.fit(
        task,
        train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)),
        data,
        epochs=1,
        data_key=jax.random.PRNGKey(1),
    )
    grown = growth.add_neurons(state, 0, 3, *new_weights(state, 0, 3))
    assert grown.params['dense_0']['kernel'].shape == (784, 19)
    assert grown.params['dense_1']['kernel'].shape == (19, 8)
    assert task.architecture_of(grown.params) == {'hidden_widths': (16 + 3, 8)}
    for moments in jax.tree.leaves(grown.opt_state):
        assert moments.ndim == 0 or moments.shape in {leaf.shape for leaf in jax.tree.leaves(grown.params)}
    x = data.validation_images
    before = train.evaluate(task, state, x, data.validation_labels)
    after = train.evaluate(task, grown, x, data.validation_labels)
    # Equal up to the rounding of a wider matmul (2e-7 seen on an AMD EPYC without AVX-512); a new unit that reached
    # the output would move the loss by orders of magnitude more.
    np.testing.assert_allclose(after['loss'], before['loss'], rtol=1e-6)
    np.testing.assert_array_equal(after['accuracy'], before['accuracy'])
    trained, history = train.fit(task, grown, data, epochs=3, data_key=jax.random.PRNGKey(1), start_epoch=1)
    assert history[0]['compile_seconds'] > 0 and history[1]['compile_seconds'] == 0  # one recompile
    assert np.all(np.asarray(trained.params['dense_1']['kernel'][16:]) != 0)  # the new units learn
    assert history[-1]['train_loss'] < history[0]['train_loss']


def test_growth_keeps_masks_and_pads_them_with_ones(data):
    task, hparams = mlp_task('sgd', 0.1, 64, after_update=masks.apply_masks)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    state = state.replace(masks=jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, bool), state.params))
    grown = growth.add_neurons(state, 0, 2, *new_weights(state, 0, 2))
    assert not np.any(grown.masks['dense_0']['kernel'][:, :32]) and np.all(grown.masks['dense_0']['kernel'][:, 32:])
    assert np.all(grown.masks['output']['kernel'][32:]) and not np.any(grown.masks['output']['bias'])


@pytest.mark.slow
def test_a_grown_run_killed_and_resumed_equals_an_uninterrupted_one(data, tmp_path):
    """Grow a unit (into a masked bucket) after epoch 1, checkpoint every epoch, stop after epoch 2, resume to 4: the
    bits of 4 at once."""
    task, hparams = mlp_task('adam', 1e-2, 64, hidden_widths=(16,))
    members = runner.grid([0, 1])

    def grow_after_first_epoch(epoch, state, history):  # into a bucket of 32: masks to checkpoint and restore
        if epoch == 1:
            new_in, new_out = new_weights(state, 0, 1, key=epoch)
            return growth.grow(state, 0, growth.NewUnits(new_in, jnp.zeros(new_in.shape[:-2] + (1,)), new_out), 32)

    def run(epochs, directory, resume=False):
        return runner.train_variant(
            task,
            hparams,
            members,
            data,
            (data.validation_images, data.validation_labels),
            epochs=epochs,
            name='grow',
            checkpoint_dir=str(directory),
            resume=resume,
            on_epoch_end=grow_after_first_epoch,
            log=lambda line: None,
        )

    straight, straight_runs = run(4, tmp_path / 'straight')
    assert straight.params['dense_0']['kernel'].shape == (2, 784, 32) and units.active_units(straight, 0).tolist() == [
        17,
        17,
    ]
    run(2, tmp_path / 'killed')
    resumed, resumed_runs = run(4, tmp_path / 'killed', resume=True)
    jax.tree.map(np.testing.assert_array_equal, resumed, straight)
    strip = lambda runs: {
        label: ([{k: v for k, v in row.items() if 'seconds' not in k} for row in run['history']], run['test'])
        for label, run in runs.items()
    }
    assert strip(resumed_runs) == strip(straight_runs)


# Growth in shape buckets, the new-unit strategies, the plateau rule and the epoch hook.


def trained_state(data, widths=(8,), activation='relu', members=2, epochs=1):
    """A stacked state of `members` seeds trained for `epochs` on the teacher problem, and its Task."""
    task, hparams = mlp_task(
        'adam', 1e-2, 64, hidden_widths=widths, activation=activation, after_update=masks.apply_masks
    )
    state = train.init_members(task, [hparams] * members, jax.random.split(jax.random.PRNGKey(0), members), (784,))
    state, _ = train.fit(task, state, data, epochs=epochs, data_key=jax.random.PRNGKey(1), members=True)
    return task, state


def member_units(name, task, state, data, n, key=0, **options):
    """The new units of strategy `name` for every member of a stacked state."""
    strategy = growth.get_strategy(name, **options)
    active = jnp.asarray(units.active_units(state, 0), jnp.int32)
    call = lambda k, s, a: strategy(
        k, s, task=task, layer=0, n=n, active=a, images=data.train_images, labels=data.train_labels
    )
    return jax.jit(jax.vmap(call))(jax.random.split(jax.random.PRNGKey(key), state.step.shape[0]), state, active)


def member_losses(task, state, images, labels):
    return np.asarray(jax.vmap(lambda s: train.evaluate(task, s, images, labels)['loss'])(state))


def test_bucketed_growth_keeps_the_function_masks_spare_units_and_keeps_them_at_zero(data):
    """8 -> 12 units in a bucket of 16: the same function, 4 spare units masked; 12 -> 16 fills the bucket without a
    new shape; sigmoid units (0.5 at zero input) would learn if the masks did not hold them at exactly zero."""
    task, state = trained_state(data, activation='sigmoid')
    x, y = data.train_images, data.train_labels
    before = member_losses(task, state, x, y)
    grown = growth.grow(state, 0, member_units('zero_outgoing', task, state, data, 4), growth.capacity_for(12, 64))
    assert grown.params['dense_0']['kernel'].shape == (2, 784, 16) and units.active_units(grown, 0).tolist() == [12, 12]
    np.testing.assert_array_equal(member_losses(task, grown, x, y), before)
    assert not np.any(grown.masks['dense_0']['kernel'][..., 12:]) and np.all(grown.masks['dense_0']['kernel'][..., :12])
    assert not np.any(grown.masks['output']['kernel'][:, 12:]) and np.all(grown.masks['output']['bias'])
    trained, history = train.fit(task, grown, data, epochs=2, data_key=jax.random.PRNGKey(2), members=True)
    assert history[1]['compile_seconds'] == 0
    for leaf in (trained.params['dense_0']['kernel'][..., 12:], trained.params['dense_0']['bias'][..., 12:]):
        assert not np.any(leaf)
    assert not np.any(trained.params['output']['kernel'][:, 12:]) and np.all(
        trained.params['output']['kernel'][:, 8:12] != 0
    )
    adam = [
        node for node in jax.tree.leaves(trained.opt_state, is_leaf=lambda n: hasattr(n, 'mu')) if hasattr(node, 'mu')
    ]
    assert (
        adam
        and not np.any(adam[0].mu['output']['kernel'][:, 12:])
        and not np.any(adam[0].nu['dense_0']['kernel'][..., 12:])
    )
    filled = growth.grow(trained, 0, member_units('zero_outgoing', task, trained, data, 4), growth.capacity_for(16, 64))
    assert filled.params['dense_0']['kernel'].shape == (2, 784, 16) and units.active_units(filled, 0).tolist() == [
        16,
        16,
    ]
    np.testing.assert_array_equal(member_losses(task, filled, x, y), member_losses(task, trained, x, y))


def test_bucketed_growth_trains_as_an_exactly_shaped_one(data):
    """The masked spare units change nothing: the same new units grown into a bucket or to the exact width give the
    same function, and the same losses after two epochs of training (up to float summation order)."""
    task, state = trained_state(data, activation='sigmoid')
    units = member_units('random', task, state, data, 4)
    bucketed = growth.grow(state, 0, units, 32)
    exact = growth.grow(state, 0, units)
    assert exact.masks is None and exact.params['dense_0']['kernel'].shape[-1] == 12
    x, y = data.validation_images, data.validation_labels
    np.testing.assert_allclose(member_losses(task, bucketed, x, y), member_losses(task, exact, x, y), rtol=1e-6)
    fit = lambda s: train.fit(task, s, data, epochs=2, data_key=jax.random.PRNGKey(3), members=True)[1]
    np.testing.assert_allclose(
        [row['val_loss'] for row in fit(bucketed)], [row['val_loss'] for row in fit(exact)], rtol=1e-4
    )


def test_place_units_writes_the_units_and_resets_their_moments_and_nothing_else(data):
    task, state = trained_state(data)
    units = member_units('random', task, state, data, 3)
    placed = growth.place_units(state, 0, 2, units)
    np.testing.assert_array_equal(placed.params['dense_0']['kernel'][..., 2:5], units.incoming)
    np.testing.assert_array_equal(placed.params['output']['kernel'][:, 2:5], units.outgoing)
    adam = lambda s: next(
        n for n in jax.tree.leaves(s.opt_state, is_leaf=lambda n: hasattr(n, 'mu')) if hasattr(n, 'mu')
    )
    for moments in ('mu', 'nu'):
        old, new = getattr(adam(state), moments), getattr(adam(placed), moments)
        for module, axis in (('dense_0', -1), ('output', -2)):
            kernel, changed = np.asarray(new[module]['kernel']), np.zeros(new[module]['kernel'].shape, bool)
            changed[(Ellipsis, slice(2, 5)) + (slice(None),) * (-1 - axis)] = True
            assert np.all(kernel[changed] == 0) and np.any(np.asarray(old[module]['kernel'])[changed] != 0)
            np.testing.assert_array_equal(kernel[~changed], np.asarray(old[module]['kernel'])[~changed])


def test_a_net2net_split_keeps_the_function(data):
    task, state = trained_state(data)
    units = member_units('net2net', task, state, data, 12)  # more new units than active ones: sources repeat
    grown = growth.grow(state, 0, units)
    x = data.validation_images
    logits = lambda s: jax.vmap(lambda m: task.model(m.hparams, m.params).apply({'params': m.params}, x, train=False))(
        s
    )
    np.testing.assert_allclose(logits(grown), logits(state), atol=1e-5)
    kernel = np.asarray(grown.params['dense_0']['kernel'][0])
    sources = [int(np.argmin(np.abs(kernel[:, :8] - kernel[:, [unit]]).sum(0))) for unit in range(8, 20)]
    np.testing.assert_array_equal(kernel[:, 8:], kernel[:, sources])  # copies of active units
    outgoing = np.asarray(grown.params['output']['kernel'][0])
    assert np.all(np.std(outgoing[8:] / outgoing[sources], axis=1) < 1e-4)  # a share of the source's outgoing row


def test_the_lecture_strategies_lower_the_loss_they_train_on_and_keep_their_constraints(data):
    """Trained on the whole training set (highest_loss: on its worst-fit quarter), the new units lower that loss;
    random_inputs' units see about a quarter of the inputs; the best of 4 starts fits at least as well as start 0."""
    task, state = trained_state(data, widths=(4,), members=1)  # one member: the worst quarter is its own
    x, y = data.train_images, data.train_labels
    options = dict(steps=30, sample_size=x.shape[0], learning_rate=0.01)
    worst = np.argsort(np.asarray(growth._per_example_loss(task, train.member(state, 0), x, y)))[-128:]
    examples = {'highest_loss': (x[worst], y[worst])}
    results = {}
    for name in ('random_subsample', 'highest_loss', 'random_inputs', 'best_of_k'):
        chosen = dict(options, sample_size=128, pool_size=x.shape[0]) if name == 'highest_loss' else options
        units = member_units(name, task, state, data, 4, **chosen, **({'starts': 4} if name == 'best_of_k' else {}))
        grown = growth.grow(state, 0, units)
        before = member_losses(task, state, *examples.get(name, (x, y)))
        results[name] = member_losses(task, grown, *examples.get(name, (x, y)))
        assert np.all(results[name] < before), (name, results[name], before)
        if name == 'random_inputs':
            assert 0.15 < np.mean(np.asarray(units.incoming) != 0) < 0.35
    assert np.all(results['best_of_k'] <= results['random_subsample'])


def test_highest_loss_selection_takes_the_worst_fit_examples(data):
    task, state = trained_state(data, members=1)
    single = train.member(state, 0)
    x, y = data.train_images, data.train_labels
    chosen_x, chosen_y = growth._sample(jax.random.PRNGKey(0), task, single, x, y, 64, 'highest_loss', x.shape[0])
    losses = np.asarray(growth._per_example_loss(task, single, x, y))
    chosen_losses = np.asarray(growth._per_example_loss(task, single, chosen_x, chosen_y))
    np.testing.assert_allclose(np.sort(chosen_losses), np.sort(losses)[-64:], rtol=1e-6)


def test_plateaued():
    assert not growth.plateaued([1.0], 1, 0.1)  # not enough values yet
    assert growth.plateaued([1.0, 0.95], 1, 0.1) and not growth.plateaued([1.0, 0.85], 1, 0.1)
    assert not growth.plateaued([1.0, 0.8, 0.99], 2, 0.1)  # the best of the window counts, not its last
    assert growth.plateaued([1.0, 1.2, 0.95], 2, 0.1)  # a rise is no improvement


def test_the_growth_hook_grows_on_a_plateau_up_to_the_maximum_and_recompiles_only_for_a_new_bucket(data):
    """Start at 4 units, grow 3 at a time to 10 whenever the loss stalls (here: always), in power-of-two buckets
    capped at the maximum; zero outgoing weights leave the probe loss unchanged at every growth."""
    task, hparams = mlp_task('adam', 1e-2, 64, hidden_widths=(4,), after_update=masks.apply_masks)
    hook = growth.growth_hook(
        task,
        growth.get_strategy('zero_outgoing'),
        layer=0,
        max_width=10,
        units_per_growth=3,
        window=1,
        tolerance=10.0,
        images=data.train_images,
        labels=data.train_labels,
        key=jax.random.PRNGKey(0),
        probe=(data.validation_images, data.validation_labels),
    )
    state, runs = runner.train_variant(
        task, hparams, runner.grid([0, 1]), data, None, epochs=5, name='grow', on_epoch_end=hook, log=lambda line: None
    )
    history = runs['seed=0']['history']
    # Epoch 1 has no reference yet; from then on every epoch's loss 'stalls' until the maximum width.
    assert [row['width'] for row in history] == [4, 4, 7, 10, 10]
    assert [row['capacity'] for row in history] == [4, 4, 8, 10, 10]
    assert [row['units_added'] for row in history] == [0, 3, 3, 0, 0]
    assert [row['compile_seconds'] > 0 for row in history] == [True, False, True, True, False]
    assert [row['growth_seconds'] > 0 for row in history] == [False, True, True, False, False]
    # Function-preserving: the same loss up to the summation order of the wider program's matmuls.
    np.testing.assert_allclose(
        [row['probe_loss_after_growth'] for row in history], [row['probe_loss'] for row in history], rtol=1e-6
    )
    assert state.params['dense_0']['kernel'].shape == (2, 784, 10) and units.active_units(state, 0).tolist() == [10, 10]
    assert all(np.all(mask) for mask in jax.tree.leaves(state.masks))


# Values of each piece against hand computations (issue 26): new units' moments and batch norm, the initializer's
# fan, and the keys that must differ between growth events, members and units.


def _moment_trees(state):
    """Every subtree of the optimizer state that mirrors the params (Adam's mu and nu, momentum's trace, ...)."""
    found = []
    train.map_like_params(lambda tree: found.append(tree) or tree, state.opt_state, state.params)
    return found


@pytest.mark.parametrize('optimizer', ['adam', 'momentum', 'rmsprop'])
def test_add_neurons_gives_the_new_units_zero_optimizer_moments_and_keeps_the_old_ones(data, optimizer):
    task, hparams = mlp_task(optimizer, 1e-2, 64, hidden_widths=(6, 5))
    state, _ = train.fit(
        task, train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)), data, epochs=1,
        data_key=jax.random.PRNGKey(1),
    )  # fmt: skip
    grown = growth.add_neurons(state, 0, 3, *new_weights(state, 0, 3))
    before, after = _moment_trees(state), _moment_trees(grown)
    assert len(after) == {'adam': 2, 'momentum': 1, 'rmsprop': 1}[optimizer]
    for old, new in zip(before, after):
        for module, axis in (('dense_0', -1), ('dense_1', -2)):
            kernel = np.asarray(new[module]['kernel'])
            new_units = kernel[:, 6:] if axis == -1 else kernel[6:]
            old_units = kernel[:, :6] if axis == -1 else kernel[:6]
            assert not np.any(new_units), (optimizer, module)
            np.testing.assert_array_equal(old_units, old[module]['kernel'])
            assert np.any(np.asarray(old[module]['kernel']) != 0)  # the old moments were not zero to begin with
        assert not np.any(np.asarray(new['dense_0']['bias'])[6:])


@pytest.mark.parametrize('placement', ['before', 'after'])
def test_new_units_get_a_fresh_batch_norm_scale_1_offset_0_running_mean_0_variance_1(data, placement):
    task, hparams = mlp_task('adam', 1e-2, 64, hidden_widths=(6,), batch_norm=placement)
    state, _ = train.fit(
        task, train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)), data, epochs=1,
        data_key=jax.random.PRNGKey(1),
    )  # fmt: skip
    grown = growth.add_neurons(state, 0, 2, *new_weights(state, 0, 2))
    expected = {('params', 'scale'): 1.0, ('params', 'bias'): 0.0, ('batch_stats', 'mean'): 0.0,
                ('batch_stats', 'var'): 1.0}  # fmt: skip
    for (collection, leaf), value in expected.items():
        old = np.asarray(getattr(state, collection)['batch_norm_0'][leaf])
        new = np.asarray(getattr(grown, collection)['batch_norm_0'][leaf])
        np.testing.assert_array_equal(new[6:], [value, value])
        np.testing.assert_array_equal(new[:6], old)
        assert not np.all(old == value)  # training moved the old units' values


def test_random_units_are_drawn_as_the_initializer_draws_a_layer_of_the_grown_width(data):
    """Glorot's variance 2/(fan_in + fan_out) of the grown layers: 8 + 400 units, so the outgoing weights' variance
    is 2/(408 + 10), far from the 2/(8 + 10) of the old width."""
    task, state = trained_state(data, widths=(8,), members=1)
    units = growth.random_units(jax.random.PRNGKey(0), train.member(state, 0), task=task, layer=0, n=400)
    np.testing.assert_allclose(np.var(np.asarray(units.incoming)), 2 / (784 + 408), rtol=0.02)
    np.testing.assert_allclose(np.var(np.asarray(units.outgoing)), 2 / (408 + 10), rtol=0.1)
    assert not np.any(np.asarray(units.bias))


def _plateau_hook(task, data, strategy='random', window=1, tolerance=1.0):
    return growth.growth_hook(
        task, growth.get_strategy(strategy), layer=0, max_width=64, units_per_growth=2, window=window,
        tolerance=tolerance, images=data.train_images, labels=data.train_labels, key=jax.random.PRNGKey(0),
    )  # fmt: skip


def test_each_growth_and_each_member_draws_its_own_new_units(data):
    """Two identical members (one seed twice) grown by the hook twice: only the keys can make the units differ."""
    task, single = trained_state(data, widths=(4,), members=1)
    twins = train.stack([train.member(single, 0)] * 2)
    hook = _plateau_hook(task, data)
    flat = [{'train_loss': [1.0, 1.0]}]
    first = hook(1, twins, flat + [{'train_loss': [1.0, 1.0]}])
    assert units.active_units(first, 0).tolist() == [6, 6]
    incoming = np.asarray(first.params['dense_0']['kernel'])
    assert not np.array_equal(incoming[0, :, 4:6], incoming[1, :, 4:6])  # members differ
    second = hook(2, twins, flat + [{'train_loss': [1.0, 1.0]}])  # the same state and history at another epoch
    assert not np.array_equal(np.asarray(second.params['dense_0']['kernel'])[0, :, 4:6], incoming[0, :, 4:6])


def test_after_a_growth_the_hook_waits_a_full_window_before_growing_again(data):
    task, state = trained_state(data, widths=(4,), members=1)
    hook = _plateau_hook(task, data, 'zero_outgoing', window=2)
    row = lambda added=0: {'train_loss': [1.0], 'units_added': [added]}
    # Epoch 3 grew; at epoch 4 the window since then holds one epoch, at epoch 5 two.
    assert units.active_units(hook(4, state, [row(), row(), row(2), row()]), 0).tolist() == [4]
    assert units.active_units(hook(5, state, [row(), row(), row(2), row(), row()]), 0).tolist() == [6]
    # Without a growth, three flat epochs are enough.
    assert units.active_units(hook(3, state, [row(), row(), row()]), 0).tolist() == [6]


def test_net2net_copies_only_active_units_when_the_layer_has_spare_ones(data):
    task, state = trained_state(data, widths=(8,), members=2)
    bucketed = growth.grow(state, 0, member_units('zero_outgoing', task, state, data, 4), 32)  # 12 active of 32
    units = member_units('net2net', task, bucketed, data, 6)
    kernel = np.asarray(bucketed.params['dense_0']['kernel'])
    for member in range(2):
        for unit in range(6):
            column = np.asarray(units.incoming)[member, :, unit]
            matches = [source for source in range(32) if np.array_equal(kernel[member, :, source], column)]
            assert matches and max(matches) < 12, (member, unit, matches)


def test_random_inputs_gives_each_new_unit_its_own_subset_of_the_inputs(data):
    task, state = trained_state(data, widths=(4,), members=1)
    units = member_units('random_inputs', task, state, data, 4, steps=2)
    seen = np.asarray(units.incoming)[0] != 0  # [inputs, units]
    assert 0.15 < seen.mean() < 0.35
    assert len({column.tobytes() for column in seen.T}) == 4


def test_grow_gives_new_units_only_to_the_members_that_grow_and_leaves_the_others_bit_for_bit(data):
    """Member 1 of two grows 8 -> 12 in a bucket of 16, member 0 keeps its 8 units: its params, moments and losses
    are unchanged (only widened by masked zeros), and a later growth of member 0 alone writes after its own 8."""
    task, state = trained_state(data)
    x, y = data.train_images, data.train_labels
    before = member_losses(task, state, x, y)
    new = member_units('random', task, state, data, 4)
    grown = growth.grow(state, 0, new, 16, growing=[False, True])
    assert units.active_units(grown, 0).tolist() == [8, 12]
    kernel = np.asarray(grown.params['dense_0']['kernel'])
    np.testing.assert_array_equal(kernel[0, :, :8], np.asarray(state.params['dense_0']['kernel'])[0])
    assert not np.any(kernel[0, :, 8:]) and not np.any(np.asarray(grown.params['output']['kernel'])[0, 8:])
    np.testing.assert_array_equal(kernel[1, :, 8:12], np.asarray(new.incoming)[1])
    np.testing.assert_array_equal(np.asarray(grown.masks['dense_0']['bias']).sum(-1), [8, 12])
    losses = member_losses(task, grown, x, y)
    np.testing.assert_allclose(losses[0], before[0], rtol=1e-6)
    assert abs(losses[1] - before[1]) > 1e-4  # random outgoing weights move the grown member's loss
    again = growth.grow(grown, 0, member_units('random', task, grown, data, 4, key=1), 16, growing=[True, False])
    assert units.active_units(again, 0).tolist() == [12, 12]
    np.testing.assert_array_equal(np.asarray(again.params['dense_0']['kernel'])[1], kernel[1])
    assert np.all(np.asarray(again.params['dense_0']['kernel'])[0, :, 8:12] != 0)


def test_the_hook_grows_each_member_on_its_own_plateau(data):
    """Member 0's loss stalls, member 1's falls: only member 0 grows, and the row records it per member."""
    task, state = trained_state(data, widths=(4,))
    hook = _plateau_hook(task, data, 'zero_outgoing', tolerance=0.5)  # stalled: improved by less than half
    history = [{'train_loss': [1.0, 1.0]}, {'train_loss': [1.0, 0.4]}]
    grown = hook(2, state, history)
    assert units.active_units(grown, 0).tolist() == [6, 4]
    assert history[-1]['units_added'] == [2, 0] and history[-1]['width'] == [4, 4]
    # Next epoch member 1 stalls too; member 0's window starts at its growth, so it stalls as well.
    history.append({'train_loss': [1.0, 0.4]})
    assert units.active_units(hook(3, grown, history), 0).tolist() == [8, 6]


def test_members_growing_at_once_near_the_maximum_take_the_smallest_room_left(data):
    """Max 8, 3 units a growth: member 0 (6 active) has room for 2, member 1 (4 active) for 3, so both take 2 and
    neither passes the maximum; a member that does not grow keeps its count."""
    task, state = trained_state(data, widths=(4,))
    state = growth.grow(state, 0, member_units('zero_outgoing', task, state, data, 2), 8, growing=[True, False])
    assert units.active_units(state, 0).tolist() == [6, 4]
    hook = growth.growth_hook(
        task, growth.get_strategy('zero_outgoing'), layer=0, max_width=8, units_per_growth=3, window=1,
        tolerance=10.0, images=data.train_images, labels=data.train_labels, key=jax.random.PRNGKey(0),
    )  # fmt: skip
    history = [{'train_loss': [1.0, 1.0]}, {'train_loss': [1.0, 1.0]}]
    grown = hook(2, state, history)
    assert units.active_units(grown, 0).tolist() == [8, 6] and history[-1]['units_added'] == [2, 2]
    history.append({'train_loss': [1.0, 1.0]})
    assert units.active_units(hook(3, grown, history), 0).tolist() == [8, 8]  # member 0 is full and stays


def test_a_growths_flops_count_every_starts_training_steps_and_the_pass_that_scores_the_pool():
    widths = [784, 68, 10]
    forward = lambda examples: 2.0 * examples * (784 * 68 + 68 * 10)
    flops = lambda name, **options: growth.strategy_flops(name, widths, **options)
    assert growth.forward_flops(widths, 3) == pytest.approx(forward(3))
    assert flops('random') == flops('zero_outgoing') == flops('net2net') == 0.0  # they train nothing
    trained = 30 * 3 * forward(1024)
    assert flops('random_subsample', steps=30, sample_size=1024) == pytest.approx(trained)
    assert flops('random_inputs', steps=30, sample_size=1024) == pytest.approx(trained)
    assert flops('best_of_k', steps=30, sample_size=1024, starts=4) == pytest.approx(4 * trained)
    assert flops('best_of_k', steps=30, sample_size=1024) == pytest.approx(8 * trained)  # the registered K
    assert flops('highest_loss', steps=30, sample_size=1024) == pytest.approx(trained + forward(8192))
    assert flops('random_subsample') == pytest.approx(50 * 3 * forward(512))  # trained_units' defaults
