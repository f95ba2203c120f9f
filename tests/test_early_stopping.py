"""Early stopping: decisions equal Keras 3's callback; in a sweep each member stops, freezes and restores alone."""
import os

os.environ.setdefault('KERAS_BACKEND', 'jax')  # the parity test drives real Keras without importing TensorFlow

import jax
import numpy as np
import pytest

from conftest import teacher_data
from nets import early_stopping, runner, train


class _FakeModel:
    """Enough of a Keras model for the callback: weights are the epoch they were taken at."""

    def __init__(self):
        self.stop_training, self.epoch, self.restored = False, None, None

    def get_weights(self):
        return self.epoch

    def set_weights(self, weights):
        self.restored = weights


def _keras_run(rule: early_stopping.EarlyStopping, monitor: str, values):
    keras = pytest.importorskip('keras')
    callback = keras.callbacks.EarlyStopping(monitor=monitor, min_delta=rule.min_delta, patience=rule.patience,
                                             mode=rule.mode, baseline=rule.baseline,
                                             restore_best_weights=rule.restore_best_weights,
                                             start_from_epoch=rule.start_from_epoch)
    model = _FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    epochs_run = 0
    for epoch, value in enumerate(values):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {monitor: float(value)})
        epochs_run += 1
        if model.stop_training:
            break
    callback.on_train_end()
    return epochs_run, callback.best_epoch, model.restored, callback.wait


def _our_run(rule: early_stopping.EarlyStopping, values):
    state = early_stopping.init()
    epochs_run = 0
    for value in values:
        state, _ = early_stopping.update(rule, state, np.float32(value))
        epochs_run += 1
        if state.stopped:
            break
    restored = int(state.best_epoch) if rule.restore_best_weights and state.has_best else None
    return epochs_run, int(state.best_epoch), restored, int(state.wait)


@pytest.mark.parametrize('case', range(40))
def test_decisions_match_keras(case):
    rng = np.random.default_rng(case)
    mode = ['auto', 'min', 'max'][case % 3]
    monitor = 'val_accuracy' if mode == 'max' else 'val_loss'
    # Noisy, slowly improving curves, rounded so that ties and min_delta edges occur.
    trend = -np.linspace(0, 1, 25) if monitor == 'val_loss' else np.linspace(0, 1, 25)
    values = np.round(trend + rng.normal(0, 0.3, 25), 1).astype(np.float32)
    rule = early_stopping.EarlyStopping(
        monitor=monitor, mode=mode, patience=int(rng.integers(0, 4)), min_delta=float(rng.choice([0, 0.1])),
        baseline=None if case % 4 else float(values[0]), restore_best_weights=bool(case % 2),
        start_from_epoch=int(rng.choice([0, 0, 2])))
    assert _our_run(rule, values) == _keras_run(rule, monitor, values)


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match='monitor'):
        early_stopping.EarlyStopping(monitor='val_f1')
    with pytest.raises(ValueError, match='mode'):
        early_stopping.EarlyStopping(mode='up')
    assert early_stopping.EarlyStopping(monitor='accuracy').monitor == 'train_accuracy'


@pytest.fixture(scope='module')
def data():
    return teacher_data(1, 512, 128)


def _task(rule):
    task, _ = runner.mlp_task({'hidden_widths': (32,)}, 'sgd', 0.1, 64)
    return train.Task(task.make_model, task.make_optimizer, 64, early_stopping=rule)


def test_sweep_members_stop_freeze_and_restore_on_their_own(data):
    # Learning rates from harmless to divergent, so the members' validation losses turn at different epochs.
    rates = [0.02, 0.5, 3.0]
    rule = early_stopping.EarlyStopping(monitor='val_loss', patience=1, restore_best_weights=True)
    task = _task(rule)
    hparams = [train.as_hparams({'learning_rate': rate}) for rate in rates]
    keys = [jax.random.PRNGKey(seed) for seed in range(3)]
    data_key = jax.random.PRNGKey(9)
    sweep = train.init_members(task, hparams, train.stack(keys), (784,))
    sweep, history = train.fit(task, sweep, data, epochs=12, data_key=data_key, members=True)
    stopped_at = [sum(1 for row in history if not np.isnan(row['val_loss'][i])) for i in range(3)]
    assert len(set(stopped_at)) > 1, stopped_at  # members really stopped at different epochs
    for index, (hp, key) in enumerate(zip(hparams, keys)):
        alone, alone_history = train.fit(task, train.init_state(task, hp, key, (784,)), data, epochs=12,
                                         data_key=data_key)
        assert len(alone_history) == stopped_at[index]
        member = train.member(sweep, index)
        assert int(member.early_stopping.best_epoch) == int(alone.early_stopping.best_epoch)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), member.params,
                     alone.params)
        # The restored weights are those after the best epoch: train that many epochs without early stopping.
        plain = train.Task(task.make_model, task.make_optimizer, 64)
        best_epochs = int(alone.early_stopping.best_epoch) + 1
        reference, _ = train.fit(plain, train.init_state(plain, hp, key, (784,)), data, epochs=best_epochs,
                                 data_key=data_key)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), alone.params,
                     reference.params)


def test_monitoring_validation_without_a_validation_split_is_refused(data):
    empty = train.Data(data.train_images, data.train_labels, data.validation_images[:0], data.validation_labels[:0])
    task = _task(early_stopping.EarlyStopping(monitor='val_loss'))
    state = train.init_state(task, train.as_hparams({'learning_rate': 0.1}), jax.random.PRNGKey(0), (784,))
    with pytest.raises(ValueError, match='validation'):
        train.fit(task, state, empty, epochs=1, data_key=jax.random.PRNGKey(0))
