"""Pruning: the exact saliency equals brute force, masks hold through Adam, restore is bit-exact, removing silent
units keeps the function, OBD's Hessian diagonal is right, and a prune-rewind-shrink run resumes bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import mlp_task, teacher_data
from nets import pruning, runner, tasks, train


@pytest.fixture(scope='module')
def data():
    return teacher_data(3, 512, 128)


def tiny_task(activation='relu', widths=(5, 4), features=6):
    config = {
        'model': {'name': 'mlp', 'hidden_widths': widths, 'activation': activation},
        'optimizer': {'name': 'adam', 'learning_rate': 1e-2},
        'batch_size': 8,
    }
    return tasks.build(config, (features,), after_update=pruning.apply_masks)


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
    task, hparams = mlp_task(after_update=pruning.apply_masks)
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
    task, hparams = mlp_task('adam', 1e-2, after_update=pruning.apply_masks)
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
    task, hparams = mlp_task('adam', 1e-2, after_update=pruning.apply_masks)
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
    task, hparams = mlp_task('adam', 1e-2, hidden_widths=(16, 8), after_update=pruning.apply_masks)
    members = [tasks.member_hparams(hparams, {}) for _ in range(2)]
    state = pruning.start(train.init_members(task, members, jax.random.split(jax.random.PRNGKey(0), 2), (784,)))
    # Each member silences other units of layer 0 (zero outgoing weights, through the masks).
    silenced = np.zeros((2, 16), bool)
    silenced[0, [1, 4, 5, 9, 15]], silenced[1, [0, 2, 3, 7, 8]] = True, True
    masks = state.masks
    masks['dense_1']['kernel'] = masks['dense_1']['kernel'] & ~jnp.asarray(silenced)[:, :, None]
    state = pruning.apply_masks(state.replace(masks=masks))
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


def test_a_prune_rewind_shrink_run_killed_and_resumed_equals_an_uninterrupted_one(data, tmp_path):
    """Prune after epoch 1, then remove units, rewind and prune again after 2; stop after 1 and resume to 3."""
    task, hparams = mlp_task('adam', 1e-2, hidden_widths=(16,), after_update=pruning.apply_masks)
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
