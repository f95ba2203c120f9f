"""Early stopping: decisions equal Keras 3's callback; in a sweep each member stops, freezes and restores alone."""

import os

os.environ.setdefault('KERAS_BACKEND', 'jax')  # the parity test drives real Keras without importing TensorFlow

import dataclasses

import jax
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import early_stopping, runner, tasks, train


class _FakeModel:
    """Enough of a Keras model for the callback: weights are the epoch they were taken at."""

    def __init__(self):
        self.stop_training, self.epoch, self.restored = False, None, None

    def get_weights(self):
        return self.epoch

    def set_weights(self, weights):
        self.restored = weights


def _keras_run(rule: early_stopping.EarlyStopping, monitor: str, values):
    keras = pytest.importorskip('keras')  # a test-only reference (pinned in requirements.txt), skipped where absent
    callback = keras.callbacks.EarlyStopping(
        monitor=monitor,
        min_delta=rule.min_delta,
        patience=rule.patience,
        mode=rule.mode,
        baseline=rule.baseline,
        restore_best_weights=rule.restore_best_weights,
        start_from_epoch=rule.start_from_epoch,
    )
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
        monitor=monitor,
        mode=mode,
        patience=int(rng.integers(0, 4)),
        min_delta=float(rng.choice([0, 0.1])),
        baseline=None if case % 4 else float(values[0]),
        restore_best_weights=bool(case % 2),
        start_from_epoch=int(rng.choice([0, 0, 2])),
    )
    assert _our_run(rule, values) == _keras_run(rule, monitor, values)


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match='monitor'):
        early_stopping.EarlyStopping(monitor='')
    with pytest.raises(ValueError, match='mode'):
        early_stopping.EarlyStopping(mode='up')
    assert early_stopping.EarlyStopping(monitor='accuracy').monitor == 'train_accuracy'
    # Any metric the task reports may be monitored, and nothing else: the Task checks it against its loss.
    with pytest.raises(
        ValueError,
        match=r"monitor \(a metric of this task\) 'val_f1'; allowed: train_loss, "
        r'train_accuracy, val_loss, val_accuracy$',
    ):
        mlp_task(early_stopping={'monitor': 'val_f1'})
    reconstruction, _ = mlp_task(model='autoencoder', loss='mse', early_stopping={'monitor': 'val_mae'})
    assert reconstruction.early_stopping.monitor == 'val_mae'


@pytest.fixture(scope='module')
def data():
    return teacher_data(1, 512, 128)


def _task(rule, **model):
    return mlp_task('sgd', 0.1, 64, early_stopping=dataclasses.asdict(rule), **model)


def _rates(defaults, rates):
    return [tasks.member_hparams(defaults, {'optimizer.learning_rate': rate}) for rate in rates]


def test_sweep_members_stop_freeze_and_restore_on_their_own(data):
    # Learning rates from harmless to divergent, so the members' validation losses turn at different epochs.
    rates = [0.02, 0.5, 3.0]
    rule = early_stopping.EarlyStopping(monitor='val_loss', patience=1, restore_best_weights=True)
    task, defaults = _task(rule)
    hparams = _rates(defaults, rates)
    keys = [jax.random.PRNGKey(seed) for seed in range(3)]
    data_key = jax.random.PRNGKey(9)
    sweep = train.init_members(task, hparams, train.stack(keys), (784,))
    sweep, history = train.fit(task, sweep, data, epochs=12, data_key=data_key, members=True)
    stopped_at = [sum(1 for row in history if not np.isnan(row['val_loss'][i])) for i in range(3)]
    assert len(set(stopped_at)) > 1, stopped_at  # members really stopped at different epochs
    for index, (hp, key) in enumerate(zip(hparams, keys)):
        alone, alone_history = train.fit(
            task, train.init_state(task, hp, key, (784,)), data, epochs=12, data_key=data_key
        )
        assert len(alone_history) == stopped_at[index]
        member = train.member(sweep, index)
        assert int(member.early_stopping.best_epoch) == int(alone.early_stopping.best_epoch)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), member.params, alone.params)
        # The restored weights are those after the best epoch: train that many epochs without early stopping.
        plain = dataclasses.replace(task, early_stopping=None)
        best_epochs = int(alone.early_stopping.best_epoch) + 1
        reference, _ = train.fit(
            plain, train.init_state(plain, hp, key, (784,)), data, epochs=best_epochs, data_key=data_key
        )
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), alone.params, reference.params
        )


def test_monitoring_validation_without_a_validation_split_is_refused(data):
    empty = train.Data(data.train_images, data.train_labels, data.validation_images[:0], data.validation_labels[:0])
    task, defaults = _task(early_stopping.EarlyStopping(monitor='val_loss'))
    state = train.init_state(task, defaults, jax.random.PRNGKey(0), (784,))
    with pytest.raises(ValueError, match='validation'):
        train.fit(task, state, empty, epochs=1, data_key=jax.random.PRNGKey(0))


def test_a_stopped_member_freezes_whole_and_equals_its_run_alone(data):
    """Without restore_best_weights and with no member diverging, a stopped member's params, optimizer state, step
    and batch statistics stop changing at once, while the others train on."""
    rule = early_stopping.EarlyStopping(monitor='val_accuracy', patience=0, min_delta=0.002)
    task, defaults = _task(rule, batch_norm='before')
    hparams = _rates(defaults, [0.01, 0.1, 0.3])
    keys = [jax.random.PRNGKey(seed) for seed in range(3)]
    snapshots = []
    record = lambda epoch, state, history: snapshots.append(jax.device_get(state))
    sweep = train.init_members(task, hparams, train.stack(keys), (784,))
    sweep, history = train.fit(
        task, sweep, data, epochs=10, data_key=jax.random.PRNGKey(9), members=True, on_epoch_end=record
    )
    stopped = np.array([row['stopped'] for row in history])  # [epochs, members]
    assert any(row.any() and not row.all() for row in stopped), stopped  # some stopped while others went on
    assert not any(np.isnan(row['val_loss']).all() for row in history)  # no member diverged
    for index in range(3):
        frozen = [train.member(snapshot, index) for epoch, snapshot in enumerate(snapshots) if stopped[epoch, index]]
        for later in frozen[1:]:
            for part in ('params', 'opt_state', 'step', 'batch_stats'):
                jax.tree.map(np.testing.assert_array_equal, getattr(later, part), getattr(frozen[0], part))
        alone, alone_history = train.fit(
            task,
            train.init_state(task, hparams[index], keys[index], (784,)),
            data,
            epochs=10,
            data_key=jax.random.PRNGKey(9),
        )
        assert len(alone_history) == (int(np.argmax(stopped[:, index])) + 1 if stopped[:, index].any() else 10)
        member = train.member(sweep, index)
        assert int(member.step) == int(alone.step)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
            (member.params, member.batch_stats),
            (alone.params, alone.batch_stats),
        )


@pytest.mark.slow
def test_a_run_that_stops_early_resumes_to_the_same_epoch_and_weights(data, tmp_path):
    rule = early_stopping.EarlyStopping(monitor='val_loss', patience=1, restore_best_weights=True)
    task, defaults = _task(rule)
    members = runner.grid([0, 1], {'optimizer.learning_rate': [0.5]})
    train_to = lambda epochs, directory, resume=False: runner.train_variant(
        task,
        defaults,
        members,
        data,
        None,
        epochs=epochs,
        name='es',
        checkpoint_dir=str(directory),
        resume=resume,
        log=lambda line: None,
    )
    straight, straight_runs = train_to(30, tmp_path / 'straight')
    stopped_after = [
        len(run['history']) - sum(np.isnan(row['val_loss']) for row in run['history']) for run in straight_runs.values()
    ]
    assert max(stopped_after) < 30  # both stop before the epoch limit
    cut = min(stopped_after) - 1
    train_to(cut, tmp_path / 'interrupted')
    resumed, resumed_runs = train_to(30, tmp_path / 'interrupted', resume=True)
    jax.tree.map(np.testing.assert_array_equal, resumed, straight)
    strip = lambda runs: {
        label: [{k: v for k, v in row.items() if 'seconds' not in k} for row in run['history']]
        for label, run in runs.items()
    }
    np.testing.assert_equal(strip(resumed_runs), strip(straight_runs))
