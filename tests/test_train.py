"""Training core: scanned steps learn, scan equals a Python loop, sweeps equal their members, runs reproduce."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import teacher_data
from nets import runner, train

NUM_TRAIN, NUM_VALIDATION, BATCH = 512, 128, 64


@pytest.fixture(scope='module')
def data():
    return teacher_data(42, NUM_TRAIN, NUM_VALIDATION)


def make_task(batch_norm=None, penalty=None):
    task, _ = runner.mlp_task({'hidden_widths': (32,), 'hidden_dropout': 0.1, 'batch_norm': batch_norm},
                              'adam', 1e-3, BATCH)
    return train.Task(task.make_model, task.make_optimizer, BATCH, penalty)


def hparams(learning_rate=1e-3, dropout=0.1):
    return train.as_hparams({'learning_rate': learning_rate, 'hidden_dropout': dropout})


def fresh_state(task, seed=0, **hp):
    return train.init_state(task, hparams(**hp), jax.random.PRNGKey(seed), (784,))


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_scan_steps_lower_the_loss_on_a_fixed_batch(data):
    task = make_task()
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    state = fresh_state(task)
    before = train.evaluate(task, state, x, y)['loss']
    state, metrics = jax.lax.scan(lambda s, _: train.train_step(task, s, x, y), state, None, length=30)
    after = train.evaluate(task, state, x, y)['loss']
    assert after < 0.5 * before
    assert metrics['loss'][-1] < metrics['loss'][0]
    assert int(state.step) == 30


@pytest.mark.parametrize('batch_norm', [None, 'before'])
def test_scanned_epoch_equals_a_python_loop_of_steps(data, batch_norm):
    task = make_task(batch_norm)
    key = jax.random.PRNGKey(7)
    scanned, metrics = jax.jit(lambda s: train.run_epoch(task, s, data, key))(fresh_state(task))
    state = fresh_state(task)
    step = jax.jit(lambda s, x, y: train.train_step(task, s, x, y))
    losses = []
    for indices in train.batch_order(key, NUM_TRAIN, BATCH):
        state, step_metrics = step(state, data.train_images[indices], data.train_labels[indices])
        losses.append(step_metrics['loss'])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), scanned.params, state.params)
    np.testing.assert_allclose(metrics['train_loss'], np.mean(losses), rtol=1e-5)
    assert int(scanned.step) == NUM_TRAIN // BATCH
    validation = train.evaluate(task, scanned, data.validation_images, data.validation_labels)
    np.testing.assert_allclose(metrics['val_accuracy'], validation['accuracy'])


@pytest.mark.parametrize('shuffle', ['shared', 'per_member'])
def test_vmapped_sweep_equals_its_members_run_one_by_one(data, shuffle):
    task = make_task('after')
    settings = [dict(learning_rate=1e-3, dropout=0.1), dict(learning_rate=3e-3, dropout=0.0),
                dict(learning_rate=1e-2, dropout=0.3)]
    seeds = [0, 1, 2]
    keys = train.stack([jax.random.PRNGKey(s) for s in seeds])
    data_keys = train.stack([jax.random.PRNGKey(100 + s) for s in seeds])
    sweep = train.init_members(task, [hparams(**hp) for hp in settings], keys, (784,))
    data_key = jax.random.PRNGKey(5) if shuffle == 'shared' else data_keys
    sweep, history = train.fit(task, sweep, data, epochs=2, data_key=data_key, members=True, shuffle=shuffle)
    for index, (seed, hp) in enumerate(zip(seeds, settings)):
        alone, alone_history = train.fit(task, fresh_state(task, seed, **hp), data, epochs=2,
                                         data_key=data_key if shuffle == 'shared' else data_keys[index])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
                     train.member(sweep, index).params, alone.params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
                     train.member(sweep, index).batch_stats, alone.batch_stats)
        np.testing.assert_allclose(history[-1]['val_loss'][index], alone_history[-1]['val_loss'], rtol=1e-4)
    # The members really differ: a sweep that ignored its hyper-parameters would fail here.
    assert not np.allclose(history[-1]['train_loss'][0], history[-1]['train_loss'][2])


def test_same_seed_gives_the_same_bits_and_another_seed_does_not(data):
    task = make_task('before')
    run = lambda seed: train.fit(task, fresh_state(task, seed), data, epochs=2, data_key=jax.random.PRNGKey(1))
    (first, history), (again, history_again), (other, _) = run(0), run(0), run(1)
    assert_trees_equal(first, again)
    assert [row['val_loss'] for row in history] == [row['val_loss'] for row in history_again]
    assert not np.allclose(first.params['dense_0']['kernel'], other.params['dense_0']['kernel'])


def test_pure_train_run_equals_fit(data):
    task = make_task()
    key = jax.random.PRNGKey(3)
    state, metrics = jax.jit(lambda k: train.train_run(task, hparams(), k, data, 2))(key)
    init_key, data_key = jax.random.split(key)
    fitted, history = train.fit(task, train.init_state(task, hparams(), init_key, (784,)), data, epochs=2,
                                data_key=data_key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.params, fitted.params)
    np.testing.assert_allclose(metrics['val_loss'], [row['val_loss'] for row in history], rtol=1e-5)


def test_fit_history_reports_compile_apart_and_fit_does_not_delete_callers_arrays(data):
    task = make_task()
    hp = hparams()
    state = train.init_state(task, hp, jax.random.PRNGKey(0), (784,))
    seen = []
    _, history = train.fit(task, state, data, epochs=3, data_key=jax.random.PRNGKey(0),
                           on_epoch_end=lambda epoch, s, h: seen.append(epoch))
    assert seen == [1, 2, 3]
    assert [row['epoch'] for row in history] == [1, 2, 3]
    assert history[0]['compile_seconds'] > 0 and all(row['compile_seconds'] == 0 for row in history[1:])
    assert all(0 <= row['val_accuracy'] <= 1 and row['seconds'] > 0 for row in history)
    float(hp['learning_rate'])  # still alive although the state built from it was donated


def test_penalty_is_added_to_the_loss(data):
    strength = 0.05
    penalty = lambda params, intermediates, hp: strength * jnp.sum(params['dense_0']['kernel'] ** 2)
    plain, penalised = make_task(), make_task(penalty=penalty)
    plain = train.Task(plain.make_model, lambda hp: optax.sgd(0.1), BATCH)
    penalised = train.Task(penalised.make_model, lambda hp: optax.sgd(0.1), BATCH, penalty)
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    state = fresh_state(plain, dropout=0.0)
    without, _ = train.train_step(plain, state, x, y)
    with_penalty, _ = train.train_step(penalised, state, x, y)
    kernel = state.params['dense_0']['kernel']
    np.testing.assert_allclose(with_penalty.params['dense_0']['kernel'],
                               without.params['dense_0']['kernel'] - 0.1 * 2 * strength * kernel, atol=1e-6)
    np.testing.assert_array_equal(with_penalty.params['output']['kernel'], without.params['output']['kernel'])
