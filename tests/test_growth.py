"""Growth: add_neurons keeps the network's function when the new unit's outgoing weights are zero, the grown state
trains on (one recompile, the model rebuilt from the new widths), and a grown run resumes bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import growth, pruning, runner, train


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
    np.testing.assert_array_equal(after['loss'], before['loss'])
    np.testing.assert_array_equal(after['accuracy'], before['accuracy'])
    trained, history = train.fit(task, grown, data, epochs=3, data_key=jax.random.PRNGKey(1), start_epoch=1)
    assert history[0]['compile_seconds'] > 0 and history[1]['compile_seconds'] == 0  # one recompile
    assert np.all(np.asarray(trained.params['dense_1']['kernel'][16:]) != 0)  # the new units learn
    assert history[-1]['train_loss'] < history[0]['train_loss']


def test_growth_keeps_masks_and_pads_them_with_ones(data):
    task, hparams = mlp_task('sgd', 0.1, 64, after_update=pruning.apply_masks)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    state = state.replace(masks=jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, bool), state.params))
    grown = growth.add_neurons(state, 0, 2, *new_weights(state, 0, 2))
    assert not np.any(grown.masks['dense_0']['kernel'][:, :32]) and np.all(grown.masks['dense_0']['kernel'][:, 32:])
    assert np.all(grown.masks['output']['kernel'][32:]) and not np.any(grown.masks['output']['bias'])


def test_a_grown_run_killed_and_resumed_equals_an_uninterrupted_one(data, tmp_path):
    """Grow a unit after epoch 1, checkpoint every epoch, stop after epoch 2, resume to 4: the bits of 4 at once."""
    task, hparams = mlp_task('adam', 1e-2, 64, hidden_widths=(16,))
    members = runner.grid([0, 1])

    def grow_after_first_epoch(epoch, state, history):
        if epoch == 1:
            return growth.add_neurons(state, 0, 1, *new_weights(state, 0, 1, key=epoch))

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
    assert straight.params['dense_0']['kernel'].shape == (2, 784, 17)
    run(2, tmp_path / 'killed')
    resumed, resumed_runs = run(4, tmp_path / 'killed', resume=True)
    jax.tree.map(np.testing.assert_array_equal, resumed, straight)
    strip = lambda runs: {
        label: ([{k: v for k, v in row.items() if 'seconds' not in k} for row in run['history']], run['test'])
        for label, run in runs.items()
    }
    assert strip(resumed_runs) == strip(straight_runs)
