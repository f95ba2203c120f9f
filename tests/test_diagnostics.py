"""Diagnostics on hand-built cases: numbers computed by hand in NumPy, never through the code under test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import diagnostics, runner, train


def _state(task, hparams, seed=0):
    return train.init_state(task, hparams, jax.random.PRNGKey(seed), (784,))


def _forward(params, images, activation):
    """Pre-activations and activations of each hidden layer, and the logits, by hand in float64."""
    x, preactivations, outputs = np.asarray(images, np.float64), [], []
    layer = 0
    while f'dense_{layer}' in params:
        z = x @ np.asarray(params[f'dense_{layer}']['kernel'], np.float64) + np.asarray(
            params[f'dense_{layer}']['bias']
        )
        x = activation(z)
        preactivations.append(z)
        outputs.append(x)
        layer += 1
    logits = x @ np.asarray(params['output']['kernel'], np.float64) + np.asarray(params['output']['bias'])
    return preactivations, outputs, logits


def test_activation_statistics_match_a_hand_forward_pass():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(16, 8), activation='tanh')
    state = _state(task, hparams)
    data = teacher_data(0, 64, 0)
    values = jax.jit(lambda s: diagnostics.probe(task, s, data.train_images, data.train_labels, chunk=16))(state)
    preactivations, outputs, _ = _forward(state.params, data.train_images, np.tanh)
    np.testing.assert_allclose(values['activation_mean'], [a.mean() for a in outputs], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(values['activation_variance'], [a.var() for a in outputs], rtol=1e-4)
    np.testing.assert_allclose(values['preactivation_variance'], [z.var() for z in preactivations], rtol=1e-4)


def test_a_unit_dead_by_construction_counts_as_dead_and_only_it():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(10,), activation='relu')
    state = _state(task, hparams)
    dense = dict(state.params['dense_0'])
    # Unit 3 gets no input and a large negative bias: its pre-activation is -5 on every example, so ReLU gives 0.
    dense['kernel'] = dense['kernel'].at[:, 3].set(0.0)
    dense['bias'] = dense['bias'].at[3].set(-5.0)
    state = state.replace(params={**state.params, 'dense_0': dense})
    data = teacher_data(1, 200, 0)
    values = diagnostics.measure(task, state, data.train_images, data.train_labels)
    assert values['dead_fraction'] == [pytest.approx(0.1)]
    assert values['inactive_fraction'] == [pytest.approx(0.1)]


def test_leaky_relu_units_below_zero_are_inactive_but_not_dead():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(4,), activation='leaky_relu', negative_slope=0.1)
    state = _state(task, hparams)
    dense = dict(state.params['dense_0'])
    dense['kernel'] = dense['kernel'].at[:, :2].set(0.0)
    dense['bias'] = dense['bias'].at[:2].set(-1.0)  # units 0 and 1 are always negative, output -0.1
    state = state.replace(params={**state.params, 'dense_0': dense})
    data = teacher_data(2, 100, 0)
    values = diagnostics.measure(task, state, data.train_images, data.train_labels)
    assert values['dead_fraction'] == [0.0]
    assert values['inactive_fraction'] == [0.5]


def test_gradient_norms_match_a_manual_jax_grad_over_the_whole_probe_set():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(12, 6), activation='sigmoid')
    state = _state(task, hparams, seed=3)
    data = teacher_data(3, 96, 0)
    images, labels = data.train_images, data.train_labels

    def mean_loss(params):
        logits = task.model(state.hparams).apply({'params': params}, images, train=False)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1))

    grads = jax.grad(mean_loss)(state.params)
    expected = [float(jnp.linalg.norm(grads[name]['kernel'])) for name in ('dense_0', 'dense_1', 'output')]
    for chunk in (None, 32):  # read at once, and in three chunks whose gradients are weighted and summed
        values = diagnostics.measure(task, state, images, labels, chunk=chunk)
        np.testing.assert_allclose(values['gradient_norm'], expected, rtol=1e-5)


def test_a_stacked_sweep_gives_each_member_its_own_numbers():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(8,), activation='relu')
    members = runner.grid((0, 1))
    stacked = runner.initial_state(task, hparams, members, (784,))
    data = teacher_data(4, 32, 0)
    together = diagnostics.measure(task, stacked, data.train_images, data.train_labels, members=True)
    for index in range(2):
        alone = diagnostics.measure(task, train.member(stacked, index), data.train_images, data.train_labels)
        for name, value in alone.items():
            np.testing.assert_allclose(together[name][index], value, rtol=1e-5, atol=1e-7)


def test_the_epoch_hook_records_every_k_epochs_in_each_members_history():
    task, hparams = mlp_task('sgd', 0.1, batch_size=32, hidden_widths=(8,), activation='relu')
    data = teacher_data(5, 128, 32)
    hook = diagnostics.epoch_hook(
        diagnostics.prober(task, data.validation_images, data.validation_labels, members=True), every=2
    )
    _, runs = runner.train_variant(
        task, hparams, runner.grid((0, 1)), data, None, epochs=4, name='probe', on_epoch_end=hook, log=lambda _: None
    )
    for run in runs.values():
        recorded = [row['epoch'] for row in run['history'] if 'gradient_norm' in row]
        assert recorded == [2, 4]
        assert len(run['history'][1]['gradient_norm']) == 2  # dense_0 and output
        assert set(diagnostics.STATISTICS) <= set(run['history'][3])


def test_a_probe_set_that_does_not_split_into_chunks_is_refused():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(8,))
    data = teacher_data(6, 30, 0)
    with pytest.raises(ValueError, match='whole chunks of 8'):
        diagnostics.measure(task, _state(task, hparams), data.train_images, data.train_labels, chunk=8)


def test_the_activation_figure_draws_each_function_and_its_derivative():
    figure = diagnostics.activation_figure(('sigmoid', 'relu'))
    lines = [axis.get_lines() for axis in figure.axes]
    sigmoid_derivative = lines[0][1].get_ydata()
    assert max(sigmoid_derivative) == pytest.approx(0.25, abs=1e-4)  # σ' peaks at 1/4: vanishing gradients
    relu = lines[1][0]
    np.testing.assert_allclose(relu.get_ydata(), np.maximum(relu.get_xdata(), 0))


def test_layers_are_reported_in_depth_order_past_ten_layers():
    """12 hidden layers: 'activation_10' must come after 'activation_9', as the 30-layer nets of `initialization`
    need; a string sort would put it second."""
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(6,) * 12, activation='tanh', kernel_init='he_normal')
    state = _state(task, hparams)
    data = teacher_data(7, 32, 0)
    values = diagnostics.measure(task, state, data.train_images, data.train_labels)
    preactivations, outputs, _ = _forward(state.params, data.train_images, np.tanh)
    np.testing.assert_allclose(values['activation_variance'], [a.var() for a in outputs], rtol=1e-4)
    np.testing.assert_allclose(values['preactivation_variance'], [z.var() for z in preactivations], rtol=1e-4)
    assert len(values['gradient_norm']) == 13


def test_the_probe_reads_batch_norms_running_statistics_not_the_probe_sets_own():
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(8,), activation='relu', batch_norm='before')
    state = _state(task, hparams)
    running = {'batch_norm_0': {'mean': jnp.linspace(-1.0, 1.0, 8), 'var': jnp.linspace(0.5, 4.0, 8)}}
    state = state.replace(batch_stats=running)
    data = teacher_data(8, 64, 0)
    x = np.asarray(data.train_images, np.float64)
    z = x @ np.asarray(state.params['dense_0']['kernel'], np.float64)  # no bias before batch norm
    normalized = (z - np.asarray(running['batch_norm_0']['mean'])) / np.sqrt(np.asarray(running['batch_norm_0']['var'])
                                                                             + 1e-3)  # fmt: skip
    values = diagnostics.measure(task, state, data.train_images, data.train_labels)
    np.testing.assert_allclose(values['preactivation_variance'], [normalized.var()], rtol=1e-3)
    np.testing.assert_allclose(values['activation_mean'], [np.maximum(normalized, 0).mean()], rtol=1e-3)


def test_a_unit_whose_pre_activation_is_exactly_zero_everywhere_is_dead_and_inactive():
    """Training produces such units (ReLU weights and bias at zero): ReLU(0) = 0 passes no gradient."""
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(5,), activation='relu')
    state = _state(task, hparams)
    dense = dict(state.params['dense_0'])
    dense['kernel'], dense['bias'] = dense['kernel'].at[:, 2].set(0.0), dense['bias'].at[2].set(0.0)
    state = state.replace(params={**state.params, 'dense_0': dense})
    data = teacher_data(9, 50, 0)
    values = diagnostics.measure(task, state, data.train_images, data.train_labels)
    assert values['dead_fraction'] == [pytest.approx(0.2)]
    assert values['inactive_fraction'] == [pytest.approx(0.2)]
