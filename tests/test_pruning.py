"""Pruning: the exact saliency equals brute force, masks hold through Adam, restore is bit-exact, removing silent
units keeps the function, OBD's Hessian diagonal is right, and a prune-rewind-shrink run resumes bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import mlp_task, teacher_data
from nets import pruning, runner, tasks, train
from nets.masks import apply_masks


@pytest.fixture(scope='module')
def data():
    return teacher_data(3, 512, 128)


def tiny_task(activation='relu', widths=(5, 4), features=6):
    config = {
        'model': {'name': 'mlp', 'hidden_widths': widths, 'activation': activation},
        'optimizer': {'name': 'adam', 'learning_rate': 1e-2},
        'batch_size': 8,
    }
    return tasks.build(config, (features,), after_update=apply_masks)


def loss_of(task, state, images, labels):
    model = task.model(state.hparams, state.params)
    return lambda params: task.loss.value(model.apply({'params': params}, images, train=False), labels)


@pytest.mark.parametrize('activation', ['relu', 'tanh'])
def test_exact_saliency_equals_a_brute_force_loop(activation):
    task, hparams = tiny_task(activation)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (6,))
    images = jax.random.normal(jax.random.PRNGKey(1), (32, 6))
    labels = jax.random.randint(jax.random.PRNGKey(2), (32,), 0, 10)
    loss = jax.jit(loss_of(task, state, images, labels))
    base = loss(state.params)
    # Score only some weights: the others must come back as 0, biases as +inf.
    keep = jax.tree.map(lambda leaf: jax.random.bernoulli(jax.random.PRNGKey(leaf.size), 0.7, leaf.shape), state.params)
    scores = pruning.exact_saliency(state.params, images, labels, task.loss.value, activation, keep=keep, chunk=7)
    for module, leaves in state.params.items():
        assert np.all(np.isinf(scores[module]['bias']))
        kernel = np.asarray(leaves['kernel'])
        brute = np.zeros(kernel.shape, np.float32)
        for index in np.ndindex(kernel.shape):
            if keep[module]['kernel'][index]:
                zeroed = {**state.params, module: {**leaves, 'kernel': leaves['kernel'].at[index].set(0.0)}}
                brute[index] = loss(zeroed) - base
        np.testing.assert_allclose(scores[module]['kernel'], brute, atol=2e-6)
        assert np.any(brute != 0)


@pytest.mark.slow
def test_hutchinson_hessian_diagonal_converges_to_the_exact_one():
    task, hparams = tiny_task('tanh', widths=(4,), features=3)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (3,))
    images = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
    labels = jax.random.randint(jax.random.PRNGKey(2), (16,), 0, 10)
    loss = loss_of(task, state, images, labels)
    flat, unravel = jax.flatten_util.ravel_pytree(state.params)
    exact = jnp.diag(jax.hessian(lambda v: loss(unravel(v)))(flat))
    estimate, _ = jax.flatten_util.ravel_pytree(
        jax.jit(pruning.hessian_diagonal, static_argnums=(0, 3))(loss, state.params, jax.random.PRNGKey(3), 2048)
    )
    scale = jnp.abs(exact).max()
    np.testing.assert_allclose(estimate / scale, exact / scale, atol=0.06)
    assert jnp.abs(estimate - exact).max() < 0.2 * jnp.abs(exact).max()


def test_gauss_newton_diagonal_equals_the_diagonal_of_j_t_h_j():
    task, hparams = tiny_task('relu', widths=(4,), features=3)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (3,))
    images = jax.random.normal(jax.random.PRNGKey(1), (8, 3))
    model = task.model(state.hparams, state.params)
    logits_of = lambda params, x: model.apply({'params': params}, x, train=False)
    flat, unravel = jax.flatten_util.ravel_pytree(state.params)
    jacobian = jax.jacobian(lambda v: logits_of(unravel(v), images))(flat)  # [examples, classes, params]
    p = jax.nn.softmax(logits_of(state.params, images))
    output_hessian = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
    exact = jnp.einsum('ncp,ncd,ndp->p', jacobian, output_hessian, jacobian) / len(images)
    estimate, _ = jax.flatten_util.ravel_pytree(pruning.gauss_newton_diagonal(logits_of, state.params, images))
    np.testing.assert_allclose(estimate, exact, rtol=1e-4, atol=1e-7)
    assert np.all(estimate >= 0)


def test_prune_least_salient_removes_exactly_the_n_lowest_kept_weights(data):
    task, hparams = mlp_task(after_update=apply_masks)
    state = pruning.start(train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)))
    scores = pruning.magnitude_saliency(state.params)
    first = pruning.prune_least_salient(state, state.masks, scores, 5000)
    second = pruning.prune_least_salient(first, first.masks, scores, 3000)
    kept, total = pruning.count_kept(second.masks)
    assert total == 784 * 32 + 32 * 10 and kept == total - 8000
    for state_ in (first, second):
        removed = np.concatenate([np.asarray(s)[~np.asarray(m)] for s, m in zip(*_kernels(scores, state_.masks))])
        kept_scores = np.concatenate([np.asarray(s)[np.asarray(m)] for s, m in zip(*_kernels(scores, state_.masks))])
        assert removed.max() <= kept_scores.min()
    assert np.all(np.asarray(second.masks['dense_0']['bias']))  # biases are never pruned
    # A fraction target: prune_to_fraction reaches it, vmapped over members with their own fractions.
    stacked = train.stack([state, state])
    pruned = jax.jit(jax.vmap(pruning.prune_to_fraction))(stacked, train.stack([scores, scores]), jnp.array([0.5, 0.1]))
    np.testing.assert_array_equal(pruning.count_kept(pruned.masks)[0], np.round(np.array([0.5, 0.1]) * total))


def _kernels(scores, masks):
    return [scores[m]['kernel'] for m in scores], [masks[m]['kernel'] for m in scores]


def test_masked_weights_stay_exactly_zero_through_100_adam_steps(data):
    task, hparams = mlp_task('adam', 1e-2, after_update=apply_masks)
    state = pruning.start(train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)))
    state = pruning.prune_least_salient(
        state, state.masks, pruning.random_saliency(state.params, jax.random.PRNGKey(1)), 15000
    )
    x, y = data.train_images[:64], data.train_labels[:64]
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: train.train_step(task, s, x, y), s, None, length=100)[0])
    trained = run(state)
    adam = next(s for s in trained.opt_state if isinstance(s, optax.ScaleByAdamState))
    for tree in (trained.params, adam.mu, adam.nu):
        for module in tree:
            mask = np.asarray(state.masks[module]['kernel'])
            assert np.all(np.asarray(tree[module]['kernel'])[~mask] == 0)
            assert np.all(np.asarray(tree[module]['kernel'])[mask] != 0)  # the kept weights train


def test_restore_returns_the_bit_identical_previous_params(data):
    task, hparams = mlp_task('adam', 1e-2, after_update=apply_masks)
    state = pruning.start(train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)))
    state = pruning.prune_least_salient(state, state.masks, pruning.magnitude_saliency(state.params), 10000)
    x, y = data.train_images[:64], data.train_labels[:64]
    state, _ = jax.jit(lambda s: train.train_step(task, s, x, y))(state)
    pruned = pruning.prune_least_salient(state, state.masks, pruning.magnitude_saliency(state.params), 4000)
    back = pruning.restore(pruned)
    jax.tree.map(np.testing.assert_array_equal, back.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, back.masks, state.masks)
    # After retraining, restore brings the group back at its old values and keeps the others' new ones.
    retrained, _ = jax.jit(lambda s: train.train_step(task, s, x, y))(pruned)
    restored = pruning.restore(retrained)
    returning = np.asarray(state.masks['dense_0']['kernel'] & ~pruned.masks['dense_0']['kernel'])
    kernel = np.asarray(restored.params['dense_0']['kernel'])
    np.testing.assert_array_equal(kernel[returning], np.asarray(state.params['dense_0']['kernel'])[returning])
    kept = np.asarray(pruned.masks['dense_0']['kernel'])
    np.testing.assert_array_equal(kernel[kept], np.asarray(retrained.params['dense_0']['kernel'])[kept])


def test_removing_units_whose_outgoing_weights_are_zero_keeps_the_function(data):
    task, hparams = mlp_task('adam', 1e-2, hidden_widths=(16, 8), after_update=apply_masks)
    members = [tasks.member_hparams(hparams, {}) for _ in range(2)]
    state = pruning.start(train.init_members(task, members, jax.random.split(jax.random.PRNGKey(0), 2), (784,)))
    # Each member silences other units of layer 0 (zero outgoing weights, through the masks).
    silenced = np.zeros((2, 16), bool)
    silenced[0, [1, 4, 5, 9, 15]], silenced[1, [0, 2, 3, 7, 8]] = True, True
    masks = state.masks
    masks['dense_1']['kernel'] = masks['dense_1']['kernel'] & ~jnp.asarray(silenced)[:, :, None]
    state = apply_masks(state.replace(masks=masks))
    np.testing.assert_array_equal(pruning.silent_units(state.params, 0), silenced)
    keep = jnp.asarray(np.stack([np.flatnonzero(~row) for row in silenced]))
    smaller = pruning.remove_neurons(state, 0, keep)
    assert smaller.params['dense_0']['kernel'].shape == (2, 784, 11)
    assert smaller.params['dense_1']['kernel'].shape == (2, 11, 8)
    assert task.architecture_of(jax.tree.map(lambda x: x[0], smaller.params)) == {'hidden_widths': (11, 8)}
    x = data.validation_images
    logits = lambda s: jax.vmap(lambda m: task.model(m.hparams, m.params).apply({'params': m.params}, x, train=False))(
        s
    )
    np.testing.assert_allclose(logits(smaller), logits(state), rtol=1e-5, atol=1e-5)
    for tree in (smaller.masks, smaller.pruning['rewind'], smaller.pruning['previous_masks']):
        assert jax.tree.map(jnp.shape, tree) == jax.tree.map(jnp.shape, smaller.params)
    kept_unit = int(keep[1, 0])  # the kept units carry their own incoming weights
    np.testing.assert_array_equal(
        smaller.params['dense_0']['kernel'][1, :, 0], state.params['dense_0']['kernel'][1, :, kept_unit]
    )
    trained, history = train.fit(
        task, smaller, data, epochs=2, data_key=jax.random.PRNGKey(1), members=True, start_epoch=1
    )
    assert np.all(np.isfinite(history[-1]['train_loss']))


@pytest.mark.slow
def test_a_prune_rewind_shrink_run_killed_and_resumed_equals_an_uninterrupted_one(data, tmp_path):
    """Prune after epoch 1, then remove units, rewind and prune again after 2; stop after 1 and resume to 3."""
    task, hparams = mlp_task('adam', 1e-2, hidden_widths=(16,), after_update=apply_masks)
    images, labels = data.validation_images[:64], data.validation_labels[:64]

    def hook(epoch, state, history):
        criterion = 'exact' if epoch == 1 else 'taylor'
        if epoch == 2:
            keep = pruning.most_salient_units(pruning.neuron_saliency_members(task, state, images, labels)[0], 12)
            state = jax.vmap(lambda s: pruning.rewind(task, s))(pruning.remove_neurons(state, 0, keep))
        scores = pruning.member_saliency(criterion, task, state, images, labels, jax.random.PRNGKey(epoch))
        return jax.vmap(pruning.prune_to_fraction, in_axes=(0, 0, None))(state, scores, 0.6 / epoch)

    def run(epochs, directory, resume=False):
        return runner.train_variant(
            task, hparams, runner.grid([0, 1]), data, (images, labels), epochs=epochs, name='prune',
            checkpoint_dir=str(directory), resume=resume, on_epoch_end=hook, prepare_state=pruning.start,
            log=lambda line: None,
        )  # fmt: skip

    straight, straight_runs = run(3, tmp_path / 'straight')
    assert straight.params['dense_0']['kernel'].shape == (2, 784, 12)
    assert np.all(pruning.count_kept(straight.masks)[0] == round(0.2 * (784 * 12 + 12 * 10)))
    run(1, tmp_path / 'killed')
    resumed, resumed_runs = run(3, tmp_path / 'killed', resume=True)
    jax.tree.map(np.testing.assert_array_equal, resumed, straight)
    strip = lambda runs: {label: [{k: v for k, v in row.items() if 'seconds' not in k} for row in run['history']]
                          for label, run in runs.items()}  # fmt: skip
    assert strip(resumed_runs) == strip(straight_runs)


# Values of each piece against hand computations (issue 26): a wrong sign, key or reset would change results silently.


def _trained_tiny(activation='relu', steps=5, seed=0):
    """A tiny task's state with pruning started at init, then `steps` Adam steps (non-zero moments, step > 0)."""
    task, hparams = tiny_task(activation)
    state = pruning.start(train.init_state(task, hparams, jax.random.PRNGKey(seed), (6,)))
    images = jax.random.normal(jax.random.PRNGKey(1), (32, 6))
    labels = jax.random.randint(jax.random.PRNGKey(2), (32,), 0, 10)
    step = jax.jit(lambda s: train.train_step(task, s, images, labels)[0])
    for _ in range(steps):
        state = step(state)
    return task, state, images, labels


def test_rewind_returns_exactly_the_stored_weights_under_the_current_masks_with_a_fresh_optimizer_at_step_0():
    task, state, _, _ = _trained_tiny()
    stored = jax.tree.map(np.asarray, state.pruning['rewind'])
    state = pruning.prune_least_salient(state, state.masks, pruning.magnitude_saliency(state.params), 20)
    masks = jax.tree.map(np.asarray, state.masks)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(state.params)))
    rewound = pruning.rewind(task, state)
    for module in stored:
        for leaf in stored[module]:
            expected = np.where(masks[module][leaf], stored[module][leaf], 0.0)
            np.testing.assert_array_equal(rewound.params[module][leaf], expected)
    assert int(rewound.step) == 0
    # A fresh optimizer: Adam's count and every moment at zero (the trained state's were not).
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(state.opt_state))
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(rewound.opt_state))
    jax.tree.map(np.testing.assert_array_equal, rewound.masks, state.masks)


def test_taylor_saliency_is_the_absolute_value_of_w_times_its_gradient():
    task, state, images, labels = _trained_tiny('tanh')
    gradient = jax.grad(loss_of(task, state, images, labels))(state.params)
    scores = pruning.saliency('taylor', task, state, images, labels, jax.random.PRNGKey(0))
    signed = []
    for module in state.params:
        for leaf in state.params[module]:
            w, g = np.asarray(state.params[module][leaf], np.float64), np.asarray(gradient[module][leaf], np.float64)
            np.testing.assert_allclose(scores[module][leaf], np.abs(w * g), rtol=1e-5, atol=1e-9)
            signed.append(w * g)
    assert np.min(np.concatenate([s.ravel() for s in signed])) < 0  # the absolute value matters here


def test_obd_saliency_is_half_the_hessian_diagonal_times_w_squared():
    params = {'dense_0': {'kernel': jnp.array([[2.0, -3.0], [0.5, -1.0]])}}
    diagonal = {'dense_0': {'kernel': jnp.array([[1.0, 2.0], [4.0, 0.0]])}}
    expected = np.array([[0.5 * 1 * 4, 0.5 * 2 * 9], [0.5 * 4 * 0.25, 0.0]])
    np.testing.assert_allclose(pruning.obd_saliency(diagonal, params)['dense_0']['kernel'], expected)


@pytest.mark.parametrize('activation', ['relu', 'tanh'])
def test_exact_neuron_saliency_equals_zeroing_each_units_outgoing_weights(activation):
    task, state, images, labels = _trained_tiny(activation)
    loss = jax.jit(loss_of(task, state, images, labels))
    base = float(loss(state.params))
    scores = pruning.exact_neuron_saliency(state.params, images, labels, task.loss.value, activation)
    assert [s.shape for s in scores] == [(5,), (4,)]
    for layer, following in enumerate(('dense_1', 'output')):
        kernel = state.params[following]['kernel']
        brute = [
            float(loss({**state.params, following: {**state.params[following], 'kernel': kernel.at[unit].set(0.0)}}))
            - base
            for unit in range(kernel.shape[0])
        ]
        np.testing.assert_allclose(scores[layer], brute, rtol=1e-4, atol=1e-6)
        assert np.any(np.abs(brute) > 1e-4)


def test_most_salient_units_keeps_the_n_highest_scores_in_index_order():
    scores = jnp.array([[0.3, -1.0, 5.0, 0.2, 2.0], [9.0, 8.0, 0.0, 1.0, 7.0]])
    np.testing.assert_array_equal(pruning.most_salient_units(scores, 3), [[0, 2, 4], [0, 1, 4]])


def test_members_get_their_own_random_scores_and_the_same_key_gives_the_same_scores():
    task, hparams = tiny_task()
    one = train.init_state(task, hparams, jax.random.PRNGKey(0), (6,))
    twins = pruning.start(train.stack([one, one]))  # identical members: only the key can tell them apart
    images, labels = jnp.zeros((4, 6)), jnp.zeros((4,), jnp.int32)
    scores = pruning.member_saliency('random', task, twins, images, labels, jax.random.PRNGKey(3))
    again = pruning.member_saliency('random', task, twins, images, labels, jax.random.PRNGKey(3))
    for leaf, repeat in zip(jax.tree.leaves(scores), jax.tree.leaves(again)):
        assert not np.array_equal(leaf[0], leaf[1])
        np.testing.assert_array_equal(leaf, repeat)


def test_prune_to_fraction_is_a_fraction_of_all_prunable_weights_after_an_earlier_prune():
    task, state, _, _ = _trained_tiny()
    scores = pruning.magnitude_saliency(state.params)
    _, total = pruning.count_kept(state.masks)
    half = pruning.prune_to_fraction(state, scores, 0.5)
    third = pruning.prune_to_fraction(half, scores, 0.3)
    assert int(pruning.count_kept(half.masks)[0]) == round(0.5 * total)
    assert int(pruning.count_kept(third.masks)[0]) == round(0.3 * total)
    back = pruning.prune_to_fraction(third, scores, 0.6)  # a larger fraction never adds weights back
    jax.tree.map(np.testing.assert_array_equal, back.masks, third.masks)


def test_a_partly_pruned_unit_is_not_silent_and_a_fully_pruned_one_is():
    task, state, _, _ = _trained_tiny()
    masks = jax.tree.map(np.array, state.masks)
    masks['dense_1']['kernel'][1, :2] = False  # unit 1 of layer 0 loses two of its four outgoing weights
    masks['dense_1']['kernel'][3, :] = False  # unit 3 loses all of them
    masks['output']['kernel'][0, :] = False  # unit 0 of layer 1 too
    state = apply_masks(state.replace(masks=jax.tree.map(jnp.asarray, masks)))
    np.testing.assert_array_equal(pruning.silent_units(state.params, 0), [False, False, False, True, False])
    np.testing.assert_array_equal(pruning.silent_units(state.params, 1), [True, False, False, False])


def test_snip_scores_w_times_g_at_the_initial_weights_under_the_current_masks():
    """SNIP (a registry entry of one function): |w₀·∂L/∂w₀| at the rewind point, with removed weights at zero."""
    task, state, images, labels = _trained_tiny('tanh')
    state = pruning.prune_least_salient(state, state.masks, pruning.magnitude_saliency(state.params), 10)
    initial = jax.tree.map(lambda w, m: jnp.where(m, w, 0.0), state.pruning['rewind'], state.masks)
    gradient = jax.grad(loss_of(task, state, images, labels))(initial)
    scores = pruning.saliency('snip', task, state, images, labels, jax.random.PRNGKey(0))
    for module in initial:
        w, g = np.asarray(initial[module]['kernel'], np.float64), np.asarray(gradient[module]['kernel'], np.float64)
        np.testing.assert_allclose(scores[module]['kernel'], np.abs(w * g), rtol=1e-5, atol=1e-9)
    taylor = pruning.saliency('taylor', task, state, images, labels, jax.random.PRNGKey(0))
    assert not np.allclose(scores['dense_0']['kernel'], taylor['dense_0']['kernel'])  # not the trained weights'


def test_an_unknown_criterion_is_refused_in_one_line_naming_the_registry():
    task, state, images, labels = _trained_tiny()
    with pytest.raises(
        ValueError, match="unknown pruning criterion 'l0'; allowed: exact, exact_size, obd, taylor, snip"
    ):
        pruning.saliency('l0', task, state, images, labels, jax.random.PRNGKey(0))


def test_exact_size_ranks_by_the_size_of_the_exact_loss_change():
    task, state, images, labels = _trained_tiny()
    signed = pruning.saliency('exact', task, state, images, labels, jax.random.PRNGKey(0))
    size = pruning.saliency('exact_size', task, state, images, labels, jax.random.PRNGKey(0))
    kernel = np.asarray(signed['dense_0']['kernel'])
    assert np.any(kernel < 0)  # some zeroings lower the batch's loss: the two rankings differ
    np.testing.assert_array_equal(size['dense_0']['kernel'], np.abs(kernel))


def test_prune_layerwise_removes_each_layers_fraction_of_its_kept_weights_smallest_first():
    task, state, _, _ = _trained_tiny()
    scores = pruning.magnitude_saliency(state.params)
    fractions = {'dense_0': 0.2, 'dense_1': 0.5, 'output': 0.1}
    once = pruning.prune_layerwise(state, scores, fractions)
    twice = pruning.prune_layerwise(once, scores, fractions)
    for module, fraction in fractions.items():
        size = state.params[module]['kernel'].size
        after_one = size - round(fraction * size)
        kept = [int(np.asarray(s.masks[module]['kernel']).sum()) for s in (once, twice)]
        assert kept == [after_one, after_one - round(fraction * after_one)], module
        weights, mask = np.abs(np.asarray(state.params[module]['kernel'])), np.asarray(twice.masks[module]['kernel'])
        assert weights[~mask].max() <= weights[mask].min(), module  # by magnitude, within the layer


def test_an_imp_round_prunes_by_magnitude_then_rewinds_the_kept_weights_to_the_initial_ones():
    task, state, _, _ = _trained_tiny()
    members = train.stack([state, state])
    fractions = {'dense_0': 0.2, 'dense_1': 0.2, 'output': 0.1}
    rewound = pruning.imp_round(task, members, fractions)
    pruned = pruning.prune_layerwise(state, pruning.magnitude_saliency(state.params), fractions)
    for module in state.params:
        mask = np.asarray(pruned.masks[module]['kernel'])
        np.testing.assert_array_equal(rewound.masks[module]['kernel'][1], mask)
        expected = np.where(mask, np.asarray(state.pruning['rewind'][module]['kernel']), 0.0)
        np.testing.assert_array_equal(rewound.params[module]['kernel'][1], expected)
    np.testing.assert_array_equal(rewound.step, [0, 0])
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(rewound.opt_state))


def test_the_imp_hook_prunes_after_each_round_but_the_last_and_records_the_kept_fraction():
    task, state, _, _ = _trained_tiny()
    members = train.stack([state, state])
    hook = pruning.imp_hook(task, {'dense_0': 0.5, 'dense_1': 0.5, 'output': 0.5}, rounds=2, epochs_per_round=2)
    history = [{}]
    assert hook(1, members, history) is None and history == [{}]  # mid-round
    after_first = hook(2, members, history)
    assert history[-1]['round'] == 0 and history[-1]['kept_fraction'] == [1.0, 1.0]
    np.testing.assert_allclose(pruning.kept_fraction(after_first), 0.5, atol=0.05)
    history.append({})
    last = hook(4, after_first, history)
    assert history[-1]['round'] == 1 and last is after_first  # the last round's masks are kept as they are


def test_the_lecture_hook_does_nothing_after_its_rounds_so_that_the_final_masks_retrain():
    task, state, images, labels = _trained_tiny()
    members = train.stack([state, state])
    scores = jax.vmap(pruning.magnitude_saliency)(members.params)
    started = pruning.lecture_start(members, members, scores, 0.5)
    hook = pruning.lecture_hook(
        task, 'magnitude', rounds=1, epochs_per_round=1, images=images, labels=labels, key=jax.random.PRNGKey(0),
        reference_error=np.array([1.0, 0.0]), tolerance=0.0,
    )  # fmt: skip
    history = [{'val_accuracy': [0.5, 0.5]}]
    checked = hook(1, started, history)  # the last round: member 1's error rose, so its group is restored
    assert history[-1]['restored'] == [0, 1]
    np.testing.assert_allclose(pruning.kept_fraction(checked), [0.5, 1.0], atol=0.01)
    history.append({'val_accuracy': [0.5, 0.5]})
    assert hook(2, checked, history) is None and 'restored' not in history[-1]  # after it: retraining only


def test_a_schedule_starts_from_the_trained_weights_with_its_own_fresh_optimizer_state():
    """The retraining chain may differ from the training one (a constant rate after a cosine decay): the trained
    sweep's params and masks, the variant's hyper-parameters, optimizer state and step."""
    task, trained, _, _ = _trained_tiny(steps=5)
    fresh = pruning.start(train.init_state(task, trained.hparams, jax.random.PRNGKey(7), (6,)))
    started = pruning.start_from(trained, fresh)
    jax.tree.map(np.testing.assert_array_equal, started.params, trained.params)
    jax.tree.map(np.testing.assert_array_equal, started.opt_state, fresh.opt_state)
    assert int(started.step) == 0 and int(trained.step) == 5


def test_an_operating_point_is_the_most_compressed_rung_whose_mean_validation_error_is_within_the_bound():
    # Two members' rungs; the third rung's mean validation error (0.031) is above the bound, the second's is on it.
    rungs = {'kept': [[0.5, 0.2, 0.1], [0.5, 0.2, 0.1]], 'val': [[0.02, 0.03, 0.032], [0.02, 0.03, 0.03]]}
    candidates = pruning.rung_compressions(rungs, bound=0.03)
    assert candidates == pytest.approx({'none': 1.0, '0.5000': 2.0, '0.2000': 5.0, '0.1000': 0.0})
    assert max(candidates, key=candidates.get) == '0.2000'
    assert max(pruning.rung_compressions(rungs, bound=0.01).values()) == 1.0  # none within: the dense net
    ladder = {'seeds': [100, 101], 'test': [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]}
    assert pruning.rung_errors(ladder, 1) == {100: 0.2, 101: 0.5}
    assert all(np.isnan(value) for value in pruning.rung_errors(ladder, None).values())


def test_rank_scores_hold_the_signed_exact_change_and_its_size_and_imp_halves_the_output_layers_rate():
    task, state, images, labels = _trained_tiny()
    members = train.stack([state, state])
    key = jax.random.PRNGKey(0)
    scores = pruning.rank_scores(task, members, images, labels, key, ['exact_size', 'magnitude'])
    assert list(scores) == ['exact', 'exact_size', 'magnitude']
    signed = pruning.saliency('exact', task, state, images, labels, key)
    np.testing.assert_allclose(scores['exact']['dense_0']['kernel'][1], signed['dense_0']['kernel'], rtol=1e-6)
    np.testing.assert_array_equal(
        scores['exact_size']['dense_0']['kernel'], np.abs(scores['exact']['dense_0']['kernel'])
    )
    np.testing.assert_array_equal(scores['magnitude']['output']['kernel'][0], np.abs(state.params['output']['kernel']))
    assert pruning.imp_fractions(state.params, 0.2) == {'dense_0': 0.2, 'dense_1': 0.2, 'output': 0.1}
