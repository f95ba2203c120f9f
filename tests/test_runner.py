"""The runner: member grids and labels, train_variant's runs by member, refused member lists, per-member batch
orders, checkpoints that resume bit for bit, the caller's hook before the checkpoint, and TensorBoard folders."""

import math
import os

import jax
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import checkpoint, results, runner, train
from nets.masks import apply_masks
from test_report import read_scalars

NUM_TRAIN, NUM_VALIDATION, BATCH = 512, 128, 64
LEARNING_RATES = (0.3, 0.1, 0.01)


@pytest.fixture(scope='module')
def data():
    return teacher_data(42, NUM_TRAIN, NUM_VALIDATION)


@pytest.fixture(scope='module')
def test_split():
    """Test examples (another teacher's labels: the tests check only whose metrics land in which run)."""
    held_out = teacher_data(7, 0, 256)
    return held_out.validation_images, held_out.validation_labels


@pytest.fixture(scope='module')
def task():
    return mlp_task('sgd', 0.1, BATCH)


def quiet(_):
    pass


@pytest.fixture(scope='module')
def learning_rate_sweep(data, test_split, task, tmp_path_factory):
    """One seed, three learning rates, two epochs, with TensorBoard rows."""
    board = str(tmp_path_factory.mktemp('tensorboard'))
    members = runner.grid([0], {'optimizer.learning_rate': LEARNING_RATES})
    state, runs = runner.train_variant(
        *task, members, data, test_split, epochs=2, name='lr', tensorboard_dir=board, log=quiet
    )
    return members, state, runs, board


@pytest.fixture(scope='module')
def two_seeds_shared(data, task):
    """Seeds 0 and 1, two epochs in the shared batch order, without checkpoints."""
    return runner.train_variant(*task, runner.grid([0, 1]), data, None, epochs=2, name='v', log=quiet)


def assert_trees_close(a, b, rtol=1e-3, atol=1e-4):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_grid_gives_every_combination_with_seeds_fastest():
    members = runner.grid([0, 1], {'optimizer.learning_rate': [0.1, 0.01], 'model.hidden_dropout': [0.0, 0.5]})
    assert members == [
        {'seed': 0, 'optimizer.learning_rate': 0.1, 'model.hidden_dropout': 0.0},
        {'seed': 1, 'optimizer.learning_rate': 0.1, 'model.hidden_dropout': 0.0},
        {'seed': 0, 'optimizer.learning_rate': 0.1, 'model.hidden_dropout': 0.5},
        {'seed': 1, 'optimizer.learning_rate': 0.1, 'model.hidden_dropout': 0.5},
        {'seed': 0, 'optimizer.learning_rate': 0.01, 'model.hidden_dropout': 0.0},
        {'seed': 1, 'optimizer.learning_rate': 0.01, 'model.hidden_dropout': 0.0},
        {'seed': 0, 'optimizer.learning_rate': 0.01, 'model.hidden_dropout': 0.5},
        {'seed': 1, 'optimizer.learning_rate': 0.01, 'model.hidden_dropout': 0.5},
    ]
    assert runner.grid([3, 1]) == [{'seed': 3}, {'seed': 1}]


def test_member_label_names_the_seed_and_every_swept_value():
    assert runner.member_label({'seed': 0}) == 'seed=0'
    assert runner.member_label({'seed': 0, 'optimizer.learning_rate': 0.01}) == 'seed=0,optimizer.learning_rate=0.01'
    assert (
        runner.member_label({'seed': 2, 'optimizer.learning_rate': 1e-4, 'model.hidden_dropout': 0.5})
        == 'seed=2,optimizer.learning_rate=0.0001,model.hidden_dropout=0.5'
    )


def test_one_seed_sweep_over_learning_rates_keeps_every_member(learning_rate_sweep, test_split, task):
    members, state, runs, _ = learning_rate_sweep
    labels = [f'seed=0,optimizer.learning_rate={lr:g}' for lr in LEARNING_RATES]
    assert list(runs) == labels
    for index, (label, lr) in enumerate(zip(labels, LEARNING_RATES)):
        run = runs[label]
        assert set(run) == {'seed', 'hparams', 'history', 'test'}
        assert run['seed'] == 0 and run['hparams'] == {'optimizer.learning_rate': lr}
        assert [row['epoch'] for row in run['history']] == [1, 2]
        assert all(isinstance(row['val_loss'], float) for row in run['history'])  # one member's, not the list
        # The member's test metrics are its own state's.
        alone = train.evaluate(task[0], train.member(state, index), *test_split)
        assert run['test']['accuracy'] == pytest.approx(float(alone['accuracy']), abs=1e-6)
        assert run['test']['loss'] == pytest.approx(float(alone['loss']), rel=1e-5)
    np.testing.assert_allclose(state.hparams['optimizer.learning_rate'], LEARNING_RATES, rtol=1e-6)
    finals = [runs[label]['history'][-1]['train_loss'] for label in labels]
    assert len(set(finals)) == 3
    assert finals[0] < finals[2]  # 0.3 learns faster than 0.01 in two epochs


def test_one_member_keeps_the_member_axis_and_trains_as_the_net_alone(data, task, test_split):
    """No branch for one member: its state is stacked [1, ...], its history and test metrics are its own numbers,
    and its weights are those of the same net trained alone (up to a vmapped matmul's summation order)."""
    state, runs = runner.train_variant(*task, runner.grid([1]), data, test_split, epochs=2, name='one', log=quiet)
    assert state.params['dense_0']['kernel'].shape == (1, 784, 32) and state.step.shape == (1,)
    (run,) = runs.values()
    assert isinstance(run['history'][-1]['val_loss'], float) and isinstance(run['test']['accuracy'], float)
    key = jax.random.PRNGKey(1)
    alone, history = train.fit(
        task[0], train.init_state(task[0], task[1], key, (784,)), data, epochs=2, data_key=jax.random.PRNGKey(0)
    )
    assert_trees_close(train.member(state, 0).params, alone.params)
    np.testing.assert_allclose(run['history'][-1]['val_loss'], history[-1]['val_loss'], rtol=1e-4)


def test_duplicate_members_are_refused(data, task):
    with pytest.raises(ValueError, match='seed=0.*twice'):
        runner.train_variant(
            *task, [{'seed': 0}, {'seed': 1}, {'seed': 0}], data, None, epochs=1, name='dup', log=quiet
        )


def test_unknown_hparam_path_is_refused_with_the_sweepable_paths(data, task):
    with pytest.raises(ValueError, match='optimizer.nope') as error:
        runner.train_variant(*task, [{'seed': 0, 'optimizer.nope': 1.0}], data, None, epochs=1, name='bad', log=quiet)
    assert 'sweepable' in str(error.value) and 'optimizer.learning_rate' in str(error.value)


def test_empty_member_list_is_refused(data, task):
    with pytest.raises(ValueError, match='no members'):
        runner.train_variant(*task, [], data, None, epochs=1, name='empty', log=quiet)


def test_per_member_batch_order_equals_the_member_trained_alone(data, task, two_seeds_shared):
    """Member i shuffles with fold_in(PRNGKey(seed_i), 1); the shared order (data_seed) gives other weights."""
    per_member, runs = runner.train_variant(
        *task, runner.grid([0, 1]), data, None, epochs=2, name='pm', shuffle='per_member', log=quiet
    )
    key = jax.random.PRNGKey(1)  # member 1, whose order neither the first member's nor the shared one gives
    alone, history = train.fit(
        task[0], train.init_state(task[0], task[1], key, (784,)), data, epochs=2, data_key=jax.random.fold_in(key, 1)
    )
    assert_trees_close(train.member(per_member, 1).params, alone.params)
    np.testing.assert_allclose(runs['seed=1']['history'][-1]['val_loss'], history[-1]['val_loss'], rtol=1e-4)
    np.testing.assert_allclose(runs['seed=1']['history'][-1]['train_loss'], history[-1]['train_loss'], rtol=1e-4)
    shared, shared_runs = two_seeds_shared
    for index, label in enumerate(['seed=0', 'seed=1']):
        assert not np.allclose(
            train.member(shared, index).params['dense_0']['kernel'],
            train.member(per_member, index).params['dense_0']['kernel'],
            rtol=1e-3,
            atol=1e-4,
        )
        assert shared_runs[label]['history'][0]['train_loss'] != runs[label]['history'][0]['train_loss']


@pytest.mark.reliability
def test_checkpoint_refuses_overwrite_and_resumes_bit_for_bit(data, task, two_seeds_shared, tmp_path):
    """One epoch into a checkpoint, then resumed to two, equals two epochs straight, bit for bit."""
    members = runner.grid([0, 1])
    directory = str(tmp_path / 'checkpoints')
    straight, straight_runs = two_seeds_shared
    runner.train_variant(*task, members, data, None, epochs=1, name='v', checkpoint_dir=directory, log=quiet)
    with pytest.raises(ValueError, match='--resume'):
        runner.train_variant(*task, members, data, None, epochs=2, name='v', checkpoint_dir=directory, log=quiet)
    lines = []
    resumed, resumed_runs = runner.train_variant(
        *task, members, data, None, epochs=2, name='v', checkpoint_dir=directory, resume=True, log=lines.append
    )
    assert 'v: resumed after epoch 1' in lines
    assert [line.split()[:3] for line in lines if line.startswith('v epoch')] == [['v', 'epoch', '2']]
    jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, straight.opt_state)
    for label in straight_runs:
        got, want = resumed_runs[label]['history'], straight_runs[label]['history']
        assert [row['epoch'] for row in got] == [1, 2]
        assert [row['train_loss'] for row in got] == [row['train_loss'] for row in want]
        assert [row['val_loss'] for row in got] == [row['val_loss'] for row in want]


@pytest.mark.reliability
def test_a_resume_whose_start_changed_trains_again_from_it_and_equals_a_fresh_run(data, task, tmp_path):
    """Issue 25, item 4: a variant's checkpoints were trained from one start (here weights halved, as an earlier
    stage's result would be); its start is now another (weights scaled by 0.25), so the resume must not continue
    them: it says so and trains from the new start, equal bit for bit to a fresh run from it."""
    members = runner.grid([0])
    directory = str(tmp_path / 'checkpoints')
    scaled = lambda factor: lambda state: state.replace(params=jax.tree.map(lambda w: factor * w, state.params))
    train = lambda **options: runner.train_variant(*task, members, data, None, epochs=2, name='v', **options)
    train(checkpoint_dir=directory, prepare_state=scaled(0.5), log=quiet)
    lines = []
    resumed, resumed_runs = train(checkpoint_dir=directory, prepare_state=scaled(0.25), resume=True, log=lines.append)
    assert any('v: its start changed' in line for line in lines) and 'v: resumed after epoch 2' not in lines
    fresh, fresh_runs = train(prepare_state=scaled(0.25), log=quiet)
    jax.tree.map(np.testing.assert_array_equal, resumed.params, fresh.params)
    timeless = lambda runs: [{k: v for k, v in r.items() if 'seconds' not in k} for r in runs['seed=0']['history']]
    assert timeless(resumed_runs) == timeless(fresh_runs)
    lines.clear()  # the same start again: continued, not retrained
    train(checkpoint_dir=directory, prepare_state=scaled(0.25), resume=True, log=lines.append)
    assert 'v: resumed after epoch 2' in lines


@pytest.mark.reliability
def test_a_checkpoint_copied_from_another_variant_is_refused_naming_both(data, task, tmp_path):
    """Issue 25, item 5: growth's random_subsample checkpoint copied into net2net's folder was resumed as net2net."""
    import shutil

    members, root = runner.grid([0]), tmp_path / 'checkpoints'
    runner.train_variant(*task, members, data, None, epochs=1, name='a', checkpoint_dir=str(root / 'a'), log=quiet)
    shutil.copytree(root / 'a', root / 'b')
    with pytest.raises(ValueError, match="variant 'a', not of 'b'"):
        runner.train_variant(
            *task, members, data, None, epochs=1, name='b', checkpoint_dir=str(root / 'b'), resume=True, log=quiet
        )


def test_hook_runs_every_epoch_before_the_checkpoint(data, task, tmp_path):
    """A state the hook returns (params halved after epoch 1) is what the checkpoint of that epoch holds."""
    directory = str(tmp_path / 'checkpoints')
    seen, before_hook = [], {}

    def halve_after_first(epoch, state, history):
        seen.append((epoch, len(history)))
        if epoch == 1:
            before_hook['params'] = jax.device_get(state.params)
            return state.replace(params=jax.tree.map(lambda leaf: 0.5 * leaf, state.params))
        return None

    lines = []
    final, _ = runner.train_variant(
        *task,
        [{'seed': 0}],
        data,
        None,
        epochs=2,
        name='hook',
        checkpoint_dir=directory,
        on_epoch_end=halve_after_first,
        log=lines.append,
    )
    assert seen == [(1, 1), (2, 2)]
    assert len([line for line in lines if line.startswith('hook epoch')]) == 2
    saver = checkpoint.Checkpointer(directory)
    state, metadata = saver.restore(final, epoch=1)
    saver.close()
    jax.tree.map(
        lambda got, want: np.testing.assert_allclose(got, 0.5 * want, rtol=1e-6), state.params, before_hook['params']
    )
    assert metadata['epoch'] == 1 and len(metadata['history']) == 1
    assert metadata['architecture'] == {'hidden_widths': [32]}


def test_tensorboard_gets_one_folder_per_member(learning_rate_sweep):
    members, _, runs, board = learning_rate_sweep
    labels = [runner.member_label(member) for member in members]
    assert sorted(os.listdir(os.path.join(board, 'lr'))) == sorted(labels)
    for label in labels:
        scalars = read_scalars(os.path.join(board, 'lr', label))
        history = runs[label]['history']
        assert [step for step, _ in scalars['val_loss']] == [1, 2]
        np.testing.assert_allclose(
            [value for _, value in scalars['val_loss']], [row['val_loss'] for row in history], rtol=1e-6
        )


def test_the_evaluation_hook_records_the_same_metrics_as_a_final_evaluation():
    task, hparams = mlp_task('sgd', 0.1, batch_size=32, hidden_widths=(8,))
    data = teacher_data(7, 128, 64)
    held_out = (data.validation_images[:32], data.validation_labels[:32])
    calls = []
    count = lambda epoch, state, history: calls.append(epoch)
    hook = runner.chain(runner.evaluation_hook(task, *held_out, members=True), count)
    _, runs = runner.train_variant(task, hparams, runner.grid((0, 1)), data, held_out, epochs=2, name='evaluated',
                                   on_epoch_end=hook, log=lambda _: None)  # fmt: skip
    assert calls == [1, 2]
    for run in runs.values():
        assert run['history'][-1]['test_accuracy'] == pytest.approx(run['test']['accuracy'])
        assert run['history'][-1]['test_loss'] == pytest.approx(run['test']['loss'], rel=1e-6)


def test_prepare_state_shapes_the_start_and_the_resume_of_a_masked_run(tmp_path):

    task, hparams = mlp_task('adam', 1e-2, batch_size=32, hidden_widths=(8,), after_update=apply_masks)
    data = teacher_data(8, 128, 32)

    def prepare(state):  # remove every other input of the hidden layer, for both members
        keep = jax.tree.map(lambda leaf: np.ones(leaf.shape, bool), state.params)
        keep['dense_0']['kernel'][..., ::2, :] = False
        return apply_masks(state.replace(masks=keep))

    run = lambda epochs, directory, resume=False: runner.train_variant(
        task, hparams, runner.grid((0, 1)), data, None, epochs=epochs, name='masked', prepare_state=prepare,
        checkpoint_dir=str(directory), resume=resume, log=lambda _: None)  # fmt: skip
    whole, _ = run(2, tmp_path / 'whole')
    run(1, tmp_path / 'split')
    resumed, _ = run(2, tmp_path / 'split', resume=True)
    assert not np.any(np.asarray(whole.params['dense_0']['kernel'])[:, ::2, :])
    for a, b in zip(jax.tree.leaves((whole.params, whole.opt_state, whole.masks)),
                    jax.tree.leaves((resumed.params, resumed.opt_state, resumed.masks))):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_state_layout_is_refused_with_one_line(tmp_path):
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(8,))
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    saver = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
    saver.save(1, state, {'epoch': 1})
    # A like-state that carries masks the saved one did not (as after a TrainState field was added).
    like = state.replace(masks=jax.tree.map(lambda leaf: np.ones(leaf.shape, bool), state.params))
    with pytest.raises(ValueError, match='holds a state of another layout than this run builds') as error:
        saver.restore(like)
    assert '\n' not in str(error.value)
    restored, metadata = saver.restore(state)  # the matching layout still restores
    assert metadata == {'epoch': 1}
    np.testing.assert_array_equal(restored.params['dense_0']['kernel'], state.params['dense_0']['kernel'])
    saver.close()


def test_a_diverged_member_freezes_and_leaves_the_others_bit_for_bit(data, task):
    """Learning rate 1e30 blows member 1 up in epoch 1: it is marked with that epoch, its later rows are NaN and
    its weights stay those it started the epoch with; member 0 trains exactly as beside a healthy member."""
    sweep = lambda rates: runner.train_variant(
        *task, runner.grid([0], {'optimizer.learning_rate': rates}), data, None, epochs=3, name='d', log=quiet
    )
    state, runs = sweep((0.1, 1e30))
    healthy_state, healthy_runs = sweep((0.1, 0.01))
    blown, kept = runs['seed=0,optimizer.learning_rate=1e+30'], runs['seed=0,optimizer.learning_rate=0.1']
    assert blown['diverged_epoch'] == 1 and 'diverged_epoch' not in kept
    assert not math.isfinite(blown['history'][0]['train_loss'])
    assert all(math.isnan(row['train_loss']) and row['diverged'] for row in blown['history'][1:])
    assert [row['diverged'] for row in kept['history']] == [False] * 3
    start = runner.initial_state(
        *task, runner.grid([0], {'optimizer.learning_rate': (0.1, 1e30)}), (data.train_images.shape[1],)
    )
    jax.tree.map(np.testing.assert_array_equal, train.member(state.params, 1), train.member(start.params, 1))
    jax.tree.map(np.testing.assert_array_equal, train.member(state.params, 0), train.member(healthy_state.params, 0))
    timeless = lambda run: [{k: v for k, v in row.items() if 'seconds' not in k} for row in run['history']]
    assert timeless(kept) == timeless(healthy_runs['seed=0,optimizer.learning_rate=0.1'])
    assert results.diverged_members({'d': runs}) == {'d/seed=0,optimizer.learning_rate=1e+30': 1}


def test_a_run_whose_every_member_diverged_stops_after_that_epoch(data, task):
    _, runs = runner.train_variant(
        *task, [{'seed': 0, 'optimizer.learning_rate': 1e30}], data, None, epochs=4, name='d', log=quiet
    )
    (run,) = runs.values()
    assert run['diverged_epoch'] == 1 and len(run['history']) == 1


def test_a_batch_larger_than_the_training_set_is_refused(data):
    task = mlp_task('sgd', 0.1, NUM_TRAIN + 1)
    with pytest.raises(ValueError, match=f'batch_size {NUM_TRAIN + 1} is larger than the {NUM_TRAIN} training'):
        runner.train_variant(*task, runner.grid([0]), data, None, epochs=1, name='big', log=quiet)
