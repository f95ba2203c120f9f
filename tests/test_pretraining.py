"""Pretraining: tied autoencoders, encoder surgery, fine-tuning modes, and per-unit subsample pretraining."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import pretraining, runner, tasks, train


def _init(task, hparams, seed=0):
    return train.init_state(task, hparams, jax.random.PRNGKey(seed), (784,))


def _inputs(seed=1, n=8):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, 784))


def test_tied_autoencoder_decodes_with_the_transposed_encoder_kernels():
    task, hparams = mlp_task(model='autoencoder', loss='mse', hidden_widths=(32, 16), tied_weights=True)
    params = _init(task, hparams).params
    assert {name: set(leaves) for name, leaves in params.items()} == {
        'dense_0': {'kernel', 'bias'},
        'dense_1': {'kernel', 'bias'},
        'decoder_0': {'bias'},
        'reconstruction': {'bias'},
    }
    # Biases are zero at init; give them values so that a misplaced bias shows.
    params = jax.tree.map(lambda leaf: leaf + 0.1 * jnp.arange(leaf.size).reshape(leaf.shape) / leaf.size, params)
    x = _inputs()
    hidden = jax.nn.relu(jax.nn.relu(x @ params['dense_0']['kernel'] + params['dense_0']['bias'])
                         @ params['dense_1']['kernel'] + params['dense_1']['bias'])  # fmt: skip
    decoded = jax.nn.relu(hidden @ params['dense_1']['kernel'].T + params['decoder_0']['bias'])
    expected = decoded @ params['dense_0']['kernel'].T + params['reconstruction']['bias']
    outputs = task.model(hparams).apply({'params': params}, x, train=False)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_untied_autoencoder_keeps_its_own_decoder_kernels():
    task, hparams = mlp_task(model='autoencoder', loss='mse', hidden_widths=(32, 16))
    params = _init(task, hparams).params
    assert params['decoder_0']['kernel'].shape == (16, 32)
    assert params['reconstruction']['kernel'].shape == (32, 784)


@pytest.mark.parametrize('batch_norm', [None, 'before'])
def test_transplanted_classifier_hidden_activations_equal_the_encoder_outputs(batch_norm):
    ae_task, ae_hparams = mlp_task(
        model='autoencoder', loss='binary_cross_entropy', hidden_widths=(32, 16), batch_norm=batch_norm
    )
    ae_state = _init(ae_task, ae_hparams)
    images = _inputs(n=64)
    for _ in range(3):  # a few updates, so that weights and running statistics are not at their initial values
        ae_state, _ = jax.jit(lambda s, x: train.train_step(ae_task, s, x, None))(ae_state, images)
    classifier, hparams = mlp_task(hidden_widths=(32, 16), batch_norm=batch_norm)
    fresh = _init(classifier, hparams, seed=5)
    state = pretraining.with_encoder(fresh, pretraining.encoder(ae_state.params, ae_state.batch_stats))

    def hidden(task, state, x):
        variables = {'params': state.params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}
        _, sown = task.model(state.hparams).apply(variables, x, train=False, mutable=['intermediates'])
        return sown['intermediates']['activation_1'][0]

    x = _inputs(seed=7)
    np.testing.assert_array_equal(hidden(classifier, state, x), hidden(ae_task, ae_state, x))
    # The head is the classifier's own fresh one, not anything of the decoder's.
    np.testing.assert_array_equal(state.params['output']['kernel'], fresh.params['output']['kernel'])
    assert {'dense_0', 'dense_1'} <= set(pretraining.encoder(ae_state.params)['params'])
    assert not {'decoder_0', 'reconstruction'} & set(pretraining.encoder(ae_state.params)['params'])


def test_transplant_refuses_layers_of_other_shapes_or_names():
    ae_task, ae_hparams = mlp_task(model='autoencoder', loss='mse', hidden_widths=(32, 16))
    encoder = pretraining.encoder(_init(ae_task, ae_hparams).params)
    narrow, hparams = mlp_task(hidden_widths=(32, 8))
    with pytest.raises(ValueError, match="'dense_1'.*shapes"):
        pretraining.with_encoder(_init(narrow, hparams), encoder)
    shallow, hparams = mlp_task(hidden_widths=(32,))
    with pytest.raises(ValueError, match="'dense_1'.*target has only"):
        pretraining.with_encoder(_init(shallow, hparams), encoder)


def _first_update(mode, optimizer='sgd'):
    """params after one step minus before, for a classifier fine-tuned in `mode`."""
    transforms = pretraining.fine_tuning_transforms(mode, 0.1)
    task, hparams = mlp_task(optimizer, 0.1, hidden_widths=(16, 8), transforms=transforms)
    data = teacher_data(0, 64, 0)
    state = _init(task, hparams)
    after, _ = jax.jit(lambda s: train.train_step(task, s, data.train_images, data.train_labels))(state)
    return jax.tree.map(lambda new, old: new - old, after.params, state.params)


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_fine_tuning_modes_scale_or_stop_only_the_encoders_updates(optimizer):
    full, frozen, lower = (_first_update(mode, optimizer) for mode in ('full', 'frozen', 'lower_learning_rate'))
    for layer in ('dense_0', 'dense_1'):
        for leaf in ('kernel', 'bias'):
            np.testing.assert_allclose(lower[layer][leaf], 0.1 * full[layer][leaf], rtol=1e-4, atol=1e-7)
            assert not np.any(frozen[layer][leaf])
            assert np.any(full[layer][leaf])
    for leaf in ('kernel', 'bias'):  # the head learns at the full rate in every mode
        np.testing.assert_array_equal(lower['output'][leaf], full['output'][leaf])
        np.testing.assert_array_equal(frozen['output'][leaf], full['output'][leaf])
    with pytest.raises(ValueError, match='unknown fine-tuning mode'):
        pretraining.fine_tuning_transforms('partial')


def test_encoder_learning_rate_factor_is_sweepable_in_one_program():
    transforms = pretraining.fine_tuning_transforms('lower_learning_rate', 1.0)
    task, hparams = mlp_task('sgd', 0.1, hidden_widths=(16,), transforms=transforms)
    members = [tasks.member_hparams(hparams, {'optimizer.transforms[0].factor': f}) for f in (1.0, 0.0)]
    state = train.init_members(task, members, jnp.stack([jax.random.PRNGKey(0)] * 2), (784,))
    data = teacher_data(0, 64, 0)
    after, _ = jax.jit(jax.vmap(lambda s: train.train_step(task, s, data.train_images, data.train_labels)))(state)
    moved = jax.tree.map(
        lambda new, old: np.abs(new - old).max(axis=tuple(range(1, new.ndim))), after.params, state.params
    )
    assert moved['dense_0']['kernel'][0] > 0 and moved['dense_0']['kernel'][1] == 0
    assert moved['output']['kernel'][0] > 0 and moved['output']['kernel'][1] > 0


def test_runner_trains_from_the_transplanted_state(tmp_path):
    """prepare_state puts the encoder in before the first epoch (with a frozen encoder it is still there at the end),
    and a resumed run continues from its checkpoint: prepare_state only shapes the state restored into."""
    ae_task, ae_hparams = mlp_task(model='autoencoder', loss='mse', hidden_widths=(16,))
    encoders = pretraining.encoder(
        train.init_members(ae_task, [ae_hparams] * 2, jnp.stack([jax.random.PRNGKey(s) for s in (7, 8)]), (784,)).params
    )
    task, hparams = mlp_task(hidden_widths=(16,), transforms=pretraining.fine_tuning_transforms('frozen'))
    data = teacher_data(0, 128, 64)
    train_variant = lambda epochs, prepare_state, resume=False: runner.train_variant(
        task,
        hparams,
        runner.grid((0, 1)),
        data,
        None,
        epochs=epochs,
        name='frozen',
        checkpoint_dir=str(tmp_path / 'checkpoints'),
        resume=resume,
        prepare_state=prepare_state,
        log=lambda line: None,
    )
    state, runs = train_variant(1, lambda state: pretraining.with_encoder(state, encoders))
    np.testing.assert_array_equal(state.params['dense_0']['kernel'], encoders['params']['dense_0']['kernel'])

    # Resuming with the same transplant continues the checkpoint (the frozen encoder is still there)...
    state, runs = train_variant(2, lambda state: pretraining.with_encoder(state, encoders), resume=True)
    np.testing.assert_array_equal(state.params['dense_0']['kernel'], encoders['params']['dense_0']['kernel'])
    assert runs['seed=0']['history'][-1]['train_loss'] < runs['seed=0']['history'][0]['train_loss']
    # ...and with another one, the variant's start changed: it trains again from it (issue 25, item 4).
    other = jax.tree.map(jnp.zeros_like, encoders)
    state, runs = train_variant(3, lambda state: pretraining.with_encoder(state, other), resume=True)
    np.testing.assert_array_equal(state.params['dense_0']['kernel'], other['params']['dense_0']['kernel'])
    assert [row['epoch'] for row in runs['seed=0']['history']] == [1, 2, 3]


def _unit_params(groups=3, width=2, inputs=784, classes=10, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {
        'dense_0': {
            'kernel': jax.random.normal(keys[0], (groups, inputs, width)),
            'bias': jax.random.normal(keys[1], (groups, width)),
        },
        'output': {
            'kernel': jax.random.normal(keys[2], (groups, width, classes)),
            'bias': jax.random.normal(keys[3], (groups, classes)),
        },
    }


def test_assembled_units_compute_each_groups_features_and_the_mean_of_their_logits():
    units = _unit_params()
    task, hparams = mlp_task(hidden_widths=(2,))
    x = _inputs()
    apply = lambda params, width: task.make_model(hparams, {'hidden_widths': (width,)}).apply(
        {'params': params}, x, train=False, mutable=['intermediates']
    )
    logits, hidden = [], []
    for group in range(3):  # each group alone, as it was trained
        out, sown = apply(train.member(units, group), 2)
        logits.append(out)
        hidden.append(sown['intermediates']['activation_0'][0])
    assembled = pretraining.assemble_units(units, with_head=True)['params']
    out, sown = apply(assembled, 6)
    np.testing.assert_allclose(sown['intermediates']['activation_0'][0], jnp.concatenate(hidden, -1), rtol=1e-6)
    np.testing.assert_allclose(out, jnp.mean(jnp.stack(logits), 0), rtol=1e-5, atol=1e-5)
    # Leading member axes (seeds) are kept.
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), units, _unit_params(seed=1))
    assert pretraining.assemble_units(stacked)['params']['dense_0']['kernel'].shape == (2, 784, 6)


def test_each_unit_group_learns_only_from_its_own_subsample():
    """Images outside group 1's subsample are zero, so group 0 (whose subsample is all zero images) gets no
    gradient on its first-layer kernel, while group 1's moves; the vmapped program equals group 1 trained alone."""
    task, hparams = mlp_task('sgd', 0.1, batch_size=4, hidden_widths=(3,))
    data = teacher_data(0, 16, 0)
    subsample = jnp.array([[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]])
    images = data.train_images.at[:10].set(0.0)
    keys = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
    order_keys = jnp.stack([jax.random.PRNGKey(2), jax.random.PRNGKey(3)])
    state = train.init_members(task, [hparams] * 2, keys, (784,))
    after, metrics = pretraining.pretrain_units(task, state, images, data.train_labels, subsample, order_keys, steps=5)
    assert metrics['loss'].shape == (5, 2)
    np.testing.assert_array_equal(after.params['dense_0']['kernel'][0], state.params['dense_0']['kernel'][0])
    assert np.abs(after.params['dense_0']['kernel'][1] - state.params['dense_0']['kernel'][1]).max() > 0
    alone, _ = pretraining.pretrain_units(
        task, train.init_members(task, [hparams], keys[1:], (784,)), images, data.train_labels, subsample[1:],
        order_keys[1:], steps=5,
    )  # fmt: skip
    np.testing.assert_allclose(alone.params['dense_0']['kernel'][0], after.params['dense_0']['kernel'][1], atol=1e-6)


def test_subsample_pretraining_gives_a_first_layer_per_seed():
    unit_task, unit_hparams = mlp_task(batch_size=8, hidden_widths=(4,))
    data = teacher_data(0, 64, 0)
    layers, metrics = pretraining.pretrain_first_layer(
        unit_task, unit_hparams, (0, 1), data.train_images, data.train_labels, groups=3, subsample_size=32, steps=10
    )
    kernel = layers['params']['dense_0']['kernel']
    assert kernel.shape == (2, 784, 12) and metrics['loss'].shape == (10, 2, 3)
    assert not np.allclose(kernel[0], kernel[1])
    # The groups learned: their loss fell over the steps.
    assert metrics['loss'][-3:].mean() < metrics['loss'][:3].mean()
    classifier, hparams = mlp_task(hidden_widths=(12, 5))
    state = pretraining.with_encoder(_init(classifier, hparams), jax.tree.map(lambda leaf: leaf[1], layers))
    np.testing.assert_array_equal(state.params['dense_0']['kernel'], kernel[1])
    with pytest.raises(ValueError, match='subsample'):
        pretraining.pretrain_first_layer(
            unit_task, unit_hparams, (0,), data.train_images, data.train_labels, groups=2, subsample_size=65, steps=1
        )


def test_reconstruction_mse_is_per_pixel_and_uses_the_sigmoid_of_the_logits():
    task, hparams = mlp_task(model='autoencoder', loss='binary_cross_entropy', hidden_widths=(8,))
    state = _init(task, hparams)
    state = state.replace(params=jax.tree.map(jnp.zeros_like, state.params))  # logits 0: every pixel 0.5
    images = _inputs(n=4)
    np.testing.assert_allclose(
        pretraining.reconstruction_mse(task, state, images), jnp.mean((images - 0.5) ** 2), rtol=1e-6
    )


def test_every_pass_over_a_groups_subsample_is_a_new_permutation():
    positions = np.asarray(pretraining._unit_batches(jax.random.PRNGKey(0), 8, steps=8, batch_size=4)).reshape(4, 8)
    for one_pass in positions:
        assert sorted(one_pass.tolist()) == list(range(8))
    assert len({tuple(one_pass) for one_pass in positions}) == 4


def test_subsample_pretraining_draws_weights_subsamples_and_batch_orders_from_different_keys(monkeypatch):
    """Each group of each seed gets its own subsample; a group's batch-order key is neither the key of its initial
    weights nor the key that drew its subsample."""
    seen = {}
    real = pretraining.pretrain_units

    def spy(task, state, images, labels, subsample, order_keys, *, steps):
        seen.update(state=state, subsample=np.asarray(subsample), order_keys=order_keys)
        return real(task, state, images, labels, subsample, order_keys, steps=steps)

    monkeypatch.setattr(pretraining, 'pretrain_units', spy)
    unit_task, unit_hparams = mlp_task(batch_size=8, hidden_widths=(4,))
    data = teacher_data(0, 64, 0)
    pretraining.pretrain_first_layer(
        unit_task, unit_hparams, (0, 1), data.train_images, data.train_labels, groups=3, subsample_size=16, steps=2
    )
    subsample, order_keys, state = seen['subsample'], seen['order_keys'], seen['state']
    assert subsample.shape == (6, 16) and len({row.tobytes() for row in subsample}) == 6
    for group in range(6):
        # init_state splits its key into (weights, dropout): the dropout key tells the weights' key.
        assert not np.array_equal(jax.random.split(order_keys[group])[1], state.rng[group])
        drawn_by_order_key = np.asarray(jax.random.permutation(order_keys[group], 64)[:16])
        assert not np.array_equal(drawn_by_order_key, subsample[group])


def test_with_encoder_zeroes_optimizer_moments_that_had_moved():
    ae_task, ae_hparams = mlp_task(model='autoencoder', loss='mse', hidden_widths=(16,))
    encoder = pretraining.encoder(_init(ae_task, ae_hparams).params)
    task, hparams = mlp_task('adam', 1e-2, hidden_widths=(16,))
    data = teacher_data(0, 64, 0)
    state, _ = jax.jit(lambda s: train.train_step(task, s, data.train_images, data.train_labels))(_init(task, hparams))
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(state.opt_state[0].mu))
    transplanted = pretraining.with_encoder(state, encoder)
    for moments in (transplanted.opt_state[0].mu, transplanted.opt_state[0].nu):
        assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(moments))


def test_the_6_percent_verdict_reads_the_encoder_use_chosen_on_validation_not_the_better_test_error():
    """Frozen validates better and fine-tuned tests better: the verdict must name frozen (issue 22)."""
    from experiments import pretraining as experiment

    config = experiment.get_config('quick')
    config.labels = ('1000',)
    run = lambda val, test: {'history': [{'val_accuracy': val}], 'test': {'accuracy': 1 - test}}
    chosen_runs = {
        'random_1000': {'s0': run(0.90, 0.10)},
        'ae_finetune_1000': {'s0': run(0.94, 0.04)},
        'ae_frozen_1000': {'s0': run(0.95, 0.07)},
        'subsample_1000': {'s0': run(0.90, 0.10)},
    }
    choices = [experiment.encoder_use(chosen_runs)]
    assert choices[0]['chosen'] == 'ae_frozen'
    text = experiment.findings(config, chosen_runs, choices)
    assert 'not met (ae_frozen' in text
