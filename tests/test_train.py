"""Training core: scanned steps learn, scan equals a Python loop, sweeps equal their members, runs reproduce, and
the properties a bug in train_step would break (dropout streams, batch-norm statistics, penalties, hooks)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import mlp_task, teacher_data
from nets import tasks, train
from nets.masks import apply_masks

NUM_TRAIN, NUM_VALIDATION, BATCH = 512, 128, 64


@pytest.fixture(scope='module')
def data():
    return teacher_data(42, NUM_TRAIN, NUM_VALIDATION)


def make_task(batch_norm=None, **options):
    task, defaults = mlp_task('adam', 1e-3, BATCH, hidden_dropout=0.1, batch_norm=batch_norm, **options)
    return task, defaults


def hparams(defaults, learning_rate=1e-3, dropout=0.1):
    return tasks.member_hparams(defaults, {'optimizer.learning_rate': learning_rate, 'model.hidden_dropout': dropout})


def fresh_state(task, defaults, seed=0, **hp):
    return train.init_state(task, hparams(defaults, **hp), jax.random.PRNGKey(seed), (784,))


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def assert_trees_close(a, b, rtol=1e-3, atol=1e-4):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_scan_steps_lower_the_loss_on_a_fixed_batch(data):
    task, defaults = make_task()
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    state = fresh_state(task, defaults)
    before = train.evaluate(task, state, x, y)['loss']
    state, metrics = jax.lax.scan(lambda s, _: train.train_step(task, s, x, y), state, None, length=30)
    after = train.evaluate(task, state, x, y)['loss']
    assert after < 0.5 * before
    assert metrics['loss'][-1] < metrics['loss'][0]
    assert int(state.step) == 30


@pytest.mark.parametrize('batch_norm', [None, 'before'])
def test_scanned_epoch_equals_a_python_loop_of_steps(data, batch_norm):
    task, defaults = make_task(batch_norm)
    key = jax.random.PRNGKey(7)
    scanned, metrics = jax.jit(lambda s: train.run_epoch(task, s, data, key))(fresh_state(task, defaults))
    state = fresh_state(task, defaults)
    step = jax.jit(lambda s, x, y: train.train_step(task, s, x, y))
    losses = []
    for indices in train.batch_order(key, NUM_TRAIN, BATCH):
        state, step_metrics = step(state, data.train_images[indices], data.train_labels[indices])
        losses.append(step_metrics['loss'])
    assert_trees_close(scanned.params, state.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics['train_loss'], np.mean(losses), rtol=1e-5)
    assert int(scanned.step) == NUM_TRAIN // BATCH
    validation = train.evaluate(task, scanned, data.validation_images, data.validation_labels)
    np.testing.assert_allclose(metrics['val_accuracy'], validation['accuracy'])


@pytest.mark.parametrize('shuffle', ['shared', 'per_member'])
def test_vmapped_sweep_equals_its_members_run_one_by_one(data, shuffle):
    task, defaults = make_task('after')
    settings = [
        dict(learning_rate=1e-3, dropout=0.1),
        dict(learning_rate=3e-3, dropout=0.0),
        dict(learning_rate=1e-2, dropout=0.3),
    ]
    seeds = [0, 1, 2]
    keys = train.stack([jax.random.PRNGKey(s) for s in seeds])
    data_keys = train.stack([jax.random.PRNGKey(100 + s) for s in seeds])
    sweep = train.init_members(task, [hparams(defaults, **hp) for hp in settings], keys, (784,))
    data_key = jax.random.PRNGKey(5) if shuffle == 'shared' else data_keys
    sweep, history = train.fit(task, sweep, data, epochs=2, data_key=data_key, members=True, shuffle=shuffle)
    for index, (seed, hp) in enumerate(zip(seeds, settings)):
        alone, alone_history = train.fit(
            task,
            fresh_state(task, defaults, seed, **hp),
            data,
            epochs=2,
            data_key=data_key if shuffle == 'shared' else data_keys[index],
        )
        # Batched and single matmuls round differently, and two epochs at rates up to 1e-2 amplify that to a few
        # 1e-4 on some CPUs (an Intel Xeon here: 1.7e-4 on one weight); another member's rate or dropout moves
        # weights by 1e-2 and more.
        assert_trees_close(train.member(sweep, index).params, alone.params, atol=5e-4)
        assert_trees_close(train.member(sweep, index).batch_stats, alone.batch_stats, atol=5e-4)
        np.testing.assert_allclose(history[-1]['val_loss'][index], alone_history[-1]['val_loss'], rtol=1e-3)
    # The members really differ: a sweep that ignored its hyper-parameters would fail here.
    assert not np.allclose(history[-1]['train_loss'][0], history[-1]['train_loss'][2])


def test_same_seed_gives_the_same_bits_and_another_seed_does_not(data):
    task, defaults = make_task('before')
    run = lambda seed: train.fit(
        task, fresh_state(task, defaults, seed), data, epochs=2, data_key=jax.random.PRNGKey(1)
    )
    (first, history), (again, history_again), (other, _) = run(0), run(0), run(1)
    assert_trees_equal(first, again)
    assert [row['val_loss'] for row in history] == [row['val_loss'] for row in history_again]
    assert not np.allclose(first.params['dense_0']['kernel'], other.params['dense_0']['kernel'])


def test_fit_history_reports_compile_apart_and_fit_does_not_delete_callers_arrays(data):
    task, defaults = make_task()
    hp = hparams(defaults)
    state = train.init_state(task, hp, jax.random.PRNGKey(0), (784,))
    seen = []
    _, history = train.fit(
        task, state, data, epochs=3, data_key=jax.random.PRNGKey(0), on_epoch_end=lambda epoch, s, h: seen.append(epoch)
    )
    assert seen == [1, 2, 3]
    assert [row['epoch'] for row in history] == [1, 2, 3]
    assert history[0]['compile_seconds'] > 0 and all(row['compile_seconds'] == 0 for row in history[1:])
    assert all(0 <= row['val_accuracy'] <= 1 and row['seconds'] > 0 for row in history)
    float(hp['optimizer.learning_rate'])  # still alive although the state built from it was donated


def test_dropout_masks_of_consecutive_steps_differ(data):
    """With a learning rate of 0 the weights never move, so the training loss of one batch changes from step to
    step only through the dropout mask: step t must draw its own mask (fold_in(rng, t)), and the same step the same."""
    task, defaults = mlp_task('sgd', 0.1, BATCH, hidden_dropout=0.5)
    state = train.init_state(
        task, tasks.member_hparams(defaults, {'optimizer.learning_rate': 0.0}), jax.random.PRNGKey(0), (784,)
    )
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    step = jax.jit(lambda s: train.train_step(task, s, x, y))
    after_first, first = step(state)
    _, second = step(after_first)
    _, first_again = step(state)
    assert_trees_equal(after_first.params, state.params)
    assert float(first['loss']) == float(first_again['loss'])
    assert float(first['loss']) != float(second['loss'])


def test_training_updates_the_running_batch_norm_statistics_that_evaluation_reads(data):
    task, defaults = mlp_task('sgd', 0.1, BATCH, batch_norm='before')
    state = train.init_state(task, defaults, jax.random.PRNGKey(0), (784,))
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    stepped, _ = train.train_step(task, state, x, y)
    # Keras's momentum 0.99 from mean 0 and variance 1: one step moves them 1% of the way to the batch's moments.
    z = x @ state.params['dense_0']['kernel'] + state.params['dense_0']['bias']
    np.testing.assert_allclose(stepped.batch_stats['batch_norm_0']['mean'], 0.01 * z.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stepped.batch_stats['batch_norm_0']['var'], 0.99 + 0.01 * z.var(0), rtol=1e-4)
    fitted, history = train.fit(task, state, data, epochs=1, data_key=jax.random.PRNGKey(0))
    reads = lambda batch_stats: train.evaluate(
        task, fitted.replace(batch_stats=batch_stats), data.validation_images, data.validation_labels
    )['loss']
    np.testing.assert_allclose(history[-1]['val_loss'], reads(fitted.batch_stats), rtol=1e-6)
    initial = jax.tree.map(jnp.asarray, train.init_state(task, defaults, jax.random.PRNGKey(0), (784,)).batch_stats)
    assert not np.isclose(reads(fitted.batch_stats), reads(initial))


def test_penalty_is_added_to_the_loss(data):
    strength = 0.05
    plain, defaults = mlp_task('sgd', 0.1, BATCH)
    penalised, penalised_defaults = mlp_task(
        'sgd', 0.1, BATCH, penalties=({'layers': '^dense_0$', 'kernel_l2': strength},)
    )
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    state = train.init_state(plain, defaults, jax.random.PRNGKey(0), (784,))
    without, _ = train.train_step(plain, state, x, y)
    with_penalty, _ = train.train_step(penalised, state.replace(hparams=penalised_defaults), x, y)
    kernel = state.params['dense_0']['kernel']
    # d/dw of l2·Σw² is 2·l2·w: Keras's L2 has no ½.
    np.testing.assert_allclose(
        with_penalty.params['dense_0']['kernel'],
        without.params['dense_0']['kernel'] - 0.1 * 2 * strength * kernel,
        atol=1e-6,
    )
    np.testing.assert_array_equal(with_penalty.params['output']['kernel'], without.params['output']['kernel'])


def test_masks_applied_after_every_update_keep_pruned_weights_at_exactly_zero(data):
    task, defaults = mlp_task('adam', 1e-2, BATCH, after_update=apply_masks)
    state = train.init_state(task, defaults, jax.random.PRNGKey(0), (784,))
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 8))
    masks = jax.tree.map(lambda leaf: jax.random.bernoulli(next(keys), 0.5, leaf.shape), state.params)
    state = apply_masks(state.replace(masks=masks))
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: train.train_step(task, s, x, y), s, None, length=100)[0])
    trained = run(state)
    for leaf, start, mask in zip(
        jax.tree.leaves(trained.params), jax.tree.leaves(state.params), jax.tree.leaves(masks)
    ):
        assert np.all(np.asarray(leaf)[~np.asarray(mask)] == 0)
        assert np.all(np.asarray(leaf)[np.asarray(mask)] != np.asarray(start)[np.asarray(mask)])  # kept ones train
    moments = next(s for s in trained.opt_state if isinstance(s, optax.ScaleByAdamState))
    for tree in (moments.mu, moments.nu):
        for leaf, mask in zip(jax.tree.leaves(tree), jax.tree.leaves(masks)):
            assert np.all(np.asarray(leaf)[~np.asarray(mask)] == 0)
    # Without the hook Adam's moments move the pruned weights again: the hook is what holds them.
    unhooked, _ = mlp_task('adam', 1e-2, BATCH)
    free = jax.jit(lambda s: jax.lax.scan(lambda s, _: train.train_step(unhooked, s, x, y), s, None, length=5)[0])
    assert np.any(np.asarray(free(state).params['dense_0']['kernel'])[~np.asarray(masks['dense_0']['kernel'])] != 0)
