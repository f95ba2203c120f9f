"""Presentation orders: each is the permutation it claims, loss orders read the current weights, members agree with
runs trained alone, and the loss reaches reduce_on_plateau."""

import jax
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import orders, runner, train

NUM, BATCH = 200, 20


def _labels(seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), (NUM,), 0, 10)


def _indices(name, labels, losses=None, key=0):
    return np.asarray(orders.get_order(name).indices(jax.random.PRNGKey(key), NUM, labels, losses, BATCH))


@pytest.mark.parametrize('name', list(orders.ORDERS))
def test_every_order_is_a_permutation_of_the_examples(name):
    losses = jax.random.uniform(jax.random.PRNGKey(9), (NUM,))
    indices = _indices(name, _labels(), losses)
    assert indices.shape == (NUM // BATCH, BATCH)
    assert sorted(indices.ravel().tolist()) == list(range(NUM))


def test_sorted_by_class_presents_the_classes_in_order():
    labels = np.asarray(_labels())
    assert np.all(np.diff(labels[_indices('sorted_by_class', _labels()).ravel()]) >= 0)


def test_class_balanced_batches_hold_each_class_in_proportion_throughout_the_epoch():
    labels = np.asarray(_labels())
    presented = labels[_indices('class_balanced', _labels()).ravel()]
    share = np.bincount(labels, minlength=10) / NUM
    for end in range(1, len(presented) + 1):  # every prefix, so every batch too
        counts = np.bincount(presented[:end], minlength=10)
        assert np.all(np.abs(counts - end * share) <= 1.5), end
    # Within a class the order is random: two keys give different orders.
    assert not np.array_equal(
        _indices('class_balanced', _labels(), key=0), _indices('class_balanced', _labels(), key=1)
    )


@pytest.mark.parametrize('name, sign', [('hardest_first', -1), ('easiest_first', 1)])
def test_loss_orders_sort_by_loss(name, sign):
    losses = jax.random.uniform(jax.random.PRNGKey(3), (NUM,))
    presented = np.asarray(losses)[_indices(name, _labels(), losses).ravel()]
    assert np.all(sign * np.diff(presented) >= 0)


def test_example_losses_are_each_examples_cross_entropy_under_the_current_weights():
    task, hparams = mlp_task('sgd', 0.1, batch_size=16, hidden_widths=(8,))
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    data = teacher_data(0, 48, 0)
    logits = task.model(state.hparams).apply({'params': state.params}, data.train_images, train=False)
    expected = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), np.asarray(data.train_labels)[:, None], 1)
    losses = train.example_losses(task, state, data.train_images, data.train_labels)
    np.testing.assert_allclose(losses, expected[:, 0], rtol=1e-5)


def test_fixed_reuses_the_first_epochs_order_and_reshuffle_does_not():
    data = teacher_data(1, 96, 0)
    key = jax.random.PRNGKey(5)
    results = {}
    for name in ('fixed', 'reshuffle'):
        task, hparams = mlp_task('sgd', 0.1, batch_size=16, hidden_widths=(8,))
        task = task.__class__(**{**task.__dict__, 'order': orders.get_order(name)})
        state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
        by_hand = state
        for _ in range(2):  # epoch 0's key, twice
            by_hand, _ = jax.jit(lambda s, t=task: train.run_epoch(t, s, data, train.epoch_keys(key, 0)))(by_hand)
        fitted, _ = train.fit(task, state, data, epochs=2, data_key=key)
        results[name] = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(by_hand.params),
                                                                 jax.tree.leaves(fitted.params)))  # fmt: skip
    assert results == {'fixed': True, 'reshuffle': False}


def test_hardest_first_members_each_follow_their_own_losses_as_if_trained_alone():
    from nets import tasks

    data = teacher_data(2, 96, 32)
    config = {'model': {'name': 'mlp', 'hidden_widths': (8,)}, 'optimizer': {'name': 'sgd', 'learning_rate': 0.1},
              'batch_size': 16, 'order': 'hardest_first'}  # fmt: skip
    task, hparams = tasks.build(config, (784,))
    members = runner.grid((0, 1))
    quiet = dict(epochs=2, name='hard', log=lambda _: None)
    _, together = runner.train_variant(task, hparams, members, data, None, **quiet)
    for member in members:
        _, alone = runner.train_variant(task, hparams, [member], data, None, **quiet)
        label = runner.member_label(member)
        for row_together, row_alone in zip(together[label]['history'], alone[label]['history']):
            assert row_together['train_loss'] == pytest.approx(row_alone['train_loss'], rel=1e-5)


def test_an_unknown_order_is_refused_with_one_line():
    from nets import tasks

    config = {'model': {'name': 'mlp'}, 'optimizer': {'name': 'sgd', 'learning_rate': 0.1}, 'batch_size': 16,
              'order': 'alphabetical'}  # fmt: skip
    with pytest.raises(ValueError, match="unknown order 'alphabetical'; allowed: reshuffle, fixed") as error:
        tasks.build(config, (784,))
    assert '\n' not in str(error.value)


def test_reduce_on_plateau_reads_the_training_loss_and_cuts_the_step():
    plateau = {'name': 'reduce_on_plateau', 'factor': 0.5, 'patience': 1, 'rtol': 0.5, 'accumulation_size': 2}
    task, hparams = mlp_task('sgd', 1e-6, batch_size=16, hidden_widths=(8,), transforms=(plateau,))
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    data = teacher_data(3, 160, 0)
    state, _ = jax.jit(lambda s: train.run_epoch(task, s, data, jax.random.PRNGKey(0)))(state)
    # 10 steps make 5 means of 2 losses. A tiny rate: after the first mean sets the best, none improves on it by
    # half (rtol), so each of the other 4 halves the scale (patience 1).
    plateau_state = [node for node in jax.tree.leaves(state.opt_state, is_leaf=lambda n: hasattr(n, 'scale'))
                     if hasattr(node, 'scale')]  # fmt: skip
    assert len(plateau_state) == 1
    assert float(plateau_state[0].scale) == pytest.approx(0.5**4, rel=1e-6)


def test_an_order_that_reads_labels_is_refused_for_a_loss_without_labels():
    from nets import tasks

    config = {'model': {'name': 'autoencoder', 'hidden_widths': (8,)}, 'batch_size': 16, 'loss': 'mse',
              'optimizer': {'name': 'sgd', 'learning_rate': 0.1}, 'order': 'sorted_by_class'}  # fmt: skip
    with pytest.raises(ValueError, match="order 'sorted_by_class' reads the labels.*allowed here: reshuffle, fixed"):
        tasks.build(config, (784,))
    tasks.build({**config, 'order': 'hardest_first'}, (784,))  # loss orders need no labels


@pytest.mark.parametrize('name', ['hardest_first', 'easiest_first'])
def test_loss_orders_break_ties_at_random(name):
    """Equal losses (a fresh net often gives many) carry no order: two keys present them differently, and neither
    in index order."""
    ties = jax.numpy.zeros(NUM)
    first, second = _indices(name, _labels(), ties, key=0), _indices(name, _labels(), ties, key=1)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first.ravel(), np.arange(NUM))
