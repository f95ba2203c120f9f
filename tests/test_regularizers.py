"""Regularizers: Keras parity of the penalties (hand formula and a real Keras 3 Dense layer), per-unit weights, the
optax transforms (L2 penalty = decoupled decay under SGD, L1 sign, max-norm), swept strengths, and dropout."""

import os

os.environ.setdefault('KERAS_BACKEND', 'jax')  # real Keras without TensorFlow

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import mlp_task, teacher_data
from nets import regularizers, tasks, train

BATCH = 64


@pytest.fixture(scope='module')
def data():
    return teacher_data(11, 512, 128)


def test_penalty_values_equal_the_keras_formula_on_a_hand_computed_case():
    w = jnp.array([[1.0, -2.0], [0.5, 0.0]])
    assert float(regularizers.l1(w)) == 3.5  # |1| + |-2| + |0.5| + |0|
    assert float(regularizers.l2(w)) == 5.25  # 1 + 4 + 0.25 + 0, no ½
    # Unit 1 alone (a per-unit mask): its column is (-2, 0).
    assert float(regularizers.per_unit_sum(jnp.abs(w), jnp.array([0.0, 1.0]))) == 2.0
    assert float(regularizers.per_unit_sum(jnp.square(w), jnp.array([2.0, 1.0]))) == 2 * 1.25 + 4.0


@pytest.mark.parametrize('seed', [0, 1])
def test_penalties_equal_a_real_keras_dense_layer_with_its_regularizers(data, seed):
    """The lecture's Dense(16, kernel_regularizer=l1(a), bias_regularizer=l2(b), activity_regularizer=l2(c)) in
    Keras 3, given our weights and inputs, reports the same loss terms as our config entry."""
    keras = pytest.importorskip('keras')  # a test-only reference (pinned in requirements.txt), skipped where absent
    a, b, c = 1e-3, 0.1, 0.01
    task, hparams = mlp_task(
        'sgd', 0.1, BATCH, hidden_widths=(16,),
        penalties=({'layers': '^dense_0$', 'kernel_l1': a, 'bias_l2': b, 'activity_l2': c},),
    )  # fmt: skip
    state = train.init_state(task, hparams, jax.random.PRNGKey(seed), (784,))
    params = jax.tree.map(lambda leaf: leaf + 0.01 * (seed + 1), state.params)
    x = np.asarray(data.train_images[:BATCH])
    layer = keras.layers.Dense(
        16, activation='relu', kernel_regularizer=keras.regularizers.L1(a), bias_regularizer=keras.regularizers.L2(b),
        activity_regularizer=keras.regularizers.L2(c),
    )  # fmt: skip
    layer.build((None, 784))
    layer.set_weights([np.asarray(params['dense_0']['kernel']), np.asarray(params['dense_0']['bias'])])
    layer(x)
    keras_total = sum(float(loss) for loss in layer.losses)
    assert len(layer.losses) == 3
    _, sown = task.model(hparams).apply({'params': params}, x, train=False, mutable=['intermediates'])
    ours = float(task.penalty(params, sown['intermediates'], hparams))
    np.testing.assert_allclose(ours, keras_total, rtol=1e-5)
    # And each Keras regularizer alone on the same weights.
    kernel, bias = np.asarray(params['dense_0']['kernel']), np.asarray(params['dense_0']['bias'])
    np.testing.assert_allclose(a * regularizers.l1(kernel), float(keras.regularizers.L1(a)(kernel)), rtol=1e-6)
    np.testing.assert_allclose(b * regularizers.l2(bias), float(keras.regularizers.L2(b)(bias)), rtol=1e-6)
    both = keras.regularizers.L1L2(l1=a, l2=b)(kernel)
    np.testing.assert_allclose(a * regularizers.l1(kernel) + b * regularizers.l2(kernel), float(both), rtol=1e-6)


def test_a_per_unit_weight_vector_regularizes_only_the_chosen_neurons(data):
    units = (1.0,) + (0.0,) * 15
    task, hparams = mlp_task('sgd', 0.1, BATCH, hidden_widths=(16,), penalties=({'layers': 'dense_0', 'kernel_l2': 0.5,
                                                                                  'units': units},))  # fmt: skip
    plain, plain_hparams = mlp_task('sgd', 0.1, BATCH, hidden_widths=(16,))
    state = train.init_state(plain, plain_hparams, jax.random.PRNGKey(0), (784,))
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    without, _ = train.train_step(plain, state, x, y)
    with_penalty, _ = train.train_step(task, train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)), x, y)
    kernel = state.params['dense_0']['kernel']
    change = with_penalty.params['dense_0']['kernel'] - without.params['dense_0']['kernel']
    np.testing.assert_allclose(change[:, 0], -0.1 * 2 * 0.5 * kernel[:, 0], atol=1e-6)
    np.testing.assert_array_equal(change[:, 1:], 0)
    with pytest.raises(ValueError, match='penalties\\[0\\].units has 3 weights but layer dense_0 has 16 units'):
        mlp_task(hidden_widths=(16,), penalties=({'layers': 'dense_0', 'kernel_l2': 0.5, 'units': (1.0, 0.0, 1.0)},))


def test_an_l2_penalty_under_sgd_equals_decoupled_decay_of_twice_its_strength_step_by_step(data):
    strength = 0.01
    penalised, penalised_hparams = mlp_task('sgd', 0.1, BATCH, penalties=({'kernel_l2': strength},))
    decayed, decayed_hparams = mlp_task(
        'sgd', 0.1, BATCH, transforms=({'name': 'add_decayed_weights', 'weight_decay': 2 * strength},)
    )
    a = train.init_state(penalised, penalised_hparams, jax.random.PRNGKey(0), (784,))
    b = train.init_state(decayed, decayed_hparams, jax.random.PRNGKey(0), (784,))
    step_a = jax.jit(lambda s, x, y: train.train_step(penalised, s, x, y))
    step_b = jax.jit(lambda s, x, y: train.train_step(decayed, s, x, y))
    for indices in train.batch_order(jax.random.PRNGKey(1), 512, BATCH)[:8]:
        x, y = data.train_images[indices], data.train_labels[indices]
        a, b = step_a(a, x, y)[0], step_b(b, x, y)[0]
        jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7), a.params, b.params)
    # The decay really acted: without it the kernels differ.
    plain, plain_hparams = mlp_task('sgd', 0.1, BATCH)
    c = train.init_state(plain, plain_hparams, jax.random.PRNGKey(0), (784,))
    c, _ = train.train_step(plain, c, data.train_images[:BATCH], data.train_labels[:BATCH])
    assert not np.allclose(c.params['dense_0']['kernel'], train.init_state(
        decayed, decayed_hparams, jax.random.PRNGKey(0), (784,)).params['dense_0']['kernel'])  # fmt: skip


def test_the_l1_transform_adds_l1_sign_w_to_kernels_only(data):
    l1 = 0.01
    task, hparams = mlp_task('sgd', 0.1, BATCH, transforms=({'name': 'add_l1_sign', 'l1': l1},))
    plain, plain_hparams = mlp_task('sgd', 0.1, BATCH)
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    stepped, _ = train.train_step(task, state, x, y)
    reference, _ = train.train_step(plain, train.init_state(plain, plain_hparams, jax.random.PRNGKey(0), (784,)), x, y)
    kernel = state.params['dense_0']['kernel']
    np.testing.assert_allclose(
        stepped.params['dense_0']['kernel'], reference.params['dense_0']['kernel'] - 0.1 * l1 * jnp.sign(kernel),
        atol=1e-7,
    )  # fmt: skip
    np.testing.assert_array_equal(stepped.params['dense_0']['bias'], reference.params['dense_0']['bias'])


def test_max_norm_keeps_every_units_incoming_weights_in_the_ball_and_members_differ_in_radius(data):
    task, hparams = mlp_task('adam', 3e-2, BATCH, transforms=({'name': 'max_norm', 'max_norm': 1.0},))
    radii = [0.3, 0.6, 10.0]
    members = [tasks.member_hparams(hparams, {'optimizer.transforms[0].max_norm': r}) for r in radii]
    keys = train.stack([jax.random.PRNGKey(0)] * 3)
    sweep = train.init_members(task, members, keys, (784,))
    sweep, _ = train.fit(task, sweep, data, epochs=2, data_key=jax.random.PRNGKey(1), members=True)
    for index, radius in enumerate(radii):
        member = train.member(sweep, index)
        for layer in ('dense_0', 'output'):
            norms = np.linalg.norm(np.asarray(member.params[layer]['kernel']), axis=0)
            assert norms.max() <= radius * (1 + 1e-5), (layer, radius, norms.max())
            if radius < 1:
                assert norms.max() > 0.99 * radius  # the constraint binds: Adam at 3e-2 pushes past it
    # The unconstrained member grows past the small radii: the constraint, not the training, kept them small.
    assert np.linalg.norm(np.asarray(train.member(sweep, 2).params['dense_0']['kernel']), axis=0).max() > 0.6
    # The saturation is the share of kernel columns (over both layers) whose norm reached the radius: numpy's count.
    for index, radius in enumerate(radii):
        params = train.member(sweep, index).params
        norms = np.concatenate([np.linalg.norm(np.asarray(params[layer]['kernel']), axis=0)
                                for layer in ('dense_0', 'output')])  # fmt: skip
        expected = np.mean(norms >= (1 - 1e-3) * radius)
        assert float(regularizers.max_norm_saturation(params, radius)) == pytest.approx(expected)
        assert (expected > 0) == (radius < 1)


def test_max_norm_saturation_counts_units_on_the_ball_of_the_leaves_the_mask_chooses():
    # Columns of norm 5, 1 and 1 (a 3-4-0 triangle and two unit vectors); the bias is never a unit's weights.
    params = {'dense_0': {'kernel': jnp.array([[3.0, 0.0, 1.0], [4.0, 1.0, 0.0]]), 'bias': jnp.full(3, 9.0)},
              'output': {'kernel': jnp.array([[2.0], [0.0]]), 'bias': jnp.zeros(1)}}  # fmt: skip
    assert float(regularizers.max_norm_saturation(params, 5.0)) == pytest.approx(1 / 4)
    assert float(regularizers.max_norm_saturation(params, 1.0)) == pytest.approx(1.0)  # 2 > 1 counts as at the ball
    assert float(regularizers.max_norm_saturation(params, 1.001, rtol=1e-2)) == pytest.approx(1.0)
    assert float(regularizers.max_norm_saturation(params, 2.0)) == pytest.approx(2 / 4)
    only_first = lambda tree: {layer: {'kernel': layer == 'dense_0', 'bias': False} for layer in tree}
    assert float(regularizers.max_norm_saturation(params, 2.0, only_first)) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match='no leaf'):
        regularizers.max_norm_saturation(params, 2.0, lambda tree: jax.tree.map(lambda _: False, tree))


def test_inverted_dropouts_evaluation_output_is_the_expectation_of_its_training_output(data):
    """With dropout only before the output layer, the logits are linear in the mask, so the mean of training-mode
    logits over many masks tends to the evaluation-mode logits (standard error ~ 1/sqrt(samples))."""
    task, hparams = mlp_task('sgd', 0.1, BATCH, hidden_widths=(64,), hidden_dropout=0.5)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    model, x = task.model(hparams), data.validation_images[:16]
    evaluation = model.apply({'params': state.params}, x, train=False)
    samples = 4000
    keys = jax.random.split(jax.random.PRNGKey(1), samples)
    training = jax.lax.map(lambda k: model.apply({'params': state.params}, x, train=True, rngs={'dropout': k}), keys)
    mean, spread = training.mean(0), training.std(0)
    # Within 5 standard errors everywhere, and the masks really vary.
    assert np.all(np.abs(mean - evaluation) <= 5 * spread / np.sqrt(samples) + 1e-6)
    assert float(spread.mean()) > 0.01
    probabilities = regularizers.mc_dropout_predict(task, state, x, 500, jax.random.PRNGKey(2))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    assert np.mean(probabilities.argmax(-1) == jax.nn.softmax(evaluation).argmax(-1)) >= 0.8


def test_mc_dropout_samples_differ_from_evaluation_mode_and_from_one_another(data):
    """One sample is one random dropout mask: it differs from evaluation mode and from a sample of another key. An
    average of 200 independent masks varies far less between keys than one sample does (the masks are independent);
    with one mask repeated, it would vary as much."""
    task, hparams = mlp_task('sgd', 0.1, BATCH, hidden_widths=(64,), hidden_dropout=0.5)
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    x = data.validation_images[:32]
    evaluation = jax.nn.softmax(task.model(hparams).apply({'params': state.params}, x, train=False))
    predict = lambda samples, key: regularizers.mc_dropout_predict(task, state, x, samples, jax.random.PRNGKey(key))
    one = [predict(1, key) for key in (1, 2)]
    many = [predict(200, key) for key in (1, 2)]
    assert float(jnp.abs(one[0] - evaluation).mean()) > 0.01
    single_spread = float(jnp.abs(one[0] - one[1]).mean())
    assert single_spread > 0.01
    assert float(jnp.abs(many[0] - many[1]).mean()) < 0.3 * single_spread


def test_bias_penalties_reach_dense_biases_but_never_batch_norms_offset_or_scale():
    task, hparams = mlp_task('sgd', 0.1, BATCH, hidden_widths=(8,), batch_norm='before',
                             penalties=({'bias_l2': 0.5, 'kernel_l1': 0.25},))  # fmt: skip
    params = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)).params
    params = jax.tree.map(lambda leaf: leaf + 1.0, params)  # batch norm's offset 1 and scale 2 would count
    assert set(params['batch_norm_0']) == {'scale', 'bias'}
    dense = [params[name] for name in ('dense_0', 'output')]
    expected = sum(0.5 * np.sum(np.asarray(p['bias']) ** 2) + 0.25 * np.sum(np.abs(np.asarray(p['kernel'])))
                   for p in dense)  # fmt: skip
    np.testing.assert_allclose(float(task.penalty(params, {}, hparams)), expected, rtol=1e-5)
