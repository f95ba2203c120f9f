"""The task schema: registries refuse unknown names in one line, every field is checked before data loads,
hyper-parameters are routed by path, the optimizer chain is ordered, and any loss trains with the same `fit`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import mlp_task, teacher_data
from nets import activations, data as data_lib, initializers, losses, models, optimizers, runner, tasks, train

BATCH = 64


@pytest.fixture(scope='module')
def data():
    return teacher_data(3, 512, 128)


def config(**changes):
    base = {
        'model': {'name': 'mlp', 'hidden_widths': (16,)},
        'optimizer': {'name': 'sgd', 'learning_rate': 0.1},
        'batch_size': BATCH,
    }
    for path, value in changes.items():
        section, _, field = path.partition('__')
        if field:
            base[section] = {**base[section], field: value}
        else:
            base[section] = value
    return base


REGISTRIES = {
    'model': (models.MODELS, config(model__name='cnn')),
    'activation': (activations.ACTIVATIONS, config(model__activation='swish')),
    'initializer': (initializers.INITIALIZERS, config(model__kernel_init='orthogonal')),
    'optimizer': (optimizers.OPTIMIZERS, config(optimizer__name='adamw')),
    'schedule': (optimizers.SCHEDULES, config(optimizer__schedule={'name': 'cyclic'})),
    'transform': (optimizers.TRANSFORMS, config(optimizer__transforms=({'name': 'lookahead'},))),
    'loss': (losses.LOSSES, config(loss='hinge')),
}


@pytest.mark.parametrize('what', REGISTRIES)
def test_each_registry_refuses_an_unknown_name_in_one_line_listing_the_allowed(what):
    registry, bad = REGISTRIES[what]
    with pytest.raises(ValueError) as error:
        tasks.build(bad, (784,))
    message = str(error.value)
    assert '\n' not in message
    assert f'unknown {what} ' in message
    assert message.endswith('allowed: ' + ', '.join(registry)), message


def test_the_dataset_registry_refuses_an_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; allowed: mnist, fashion_mnist"):
        data_lib.image_shape('cifar')
    assert runner.input_shape('mnist') == (784,)


@pytest.mark.parametrize(
    'bad, expected',
    [
        (config(model__widths=(3,)), 'unknown field config.model.widths; allowed: hidden_widths'),
        (config(optimizer__beta=0.9), 'unknown field config.optimizer.beta; allowed: none'),
        (config(optimizer__learning_rate=float('nan')), 'config.optimizer.learning_rate must be a finite number > 0'),
        (config(optimizer__learning_rate=-0.1), 'config.optimizer.learning_rate must be a finite number > 0'),
        (config(optimizer__schedule={'name': 'cosine_decay'}), 'config.optimizer.schedule.decay_steps must be set'),
        (config(batch_size=0), 'config.batch_size must be a positive integer, got 0'),
        (config(model__hidden_widths=(16, 0)), 'hidden widths must be positive integers'),
        (config(model__hidden_dropout=1.0), 'dropout rate must be in [0, 1), got 1.0'),
        (config(penalties=({'layers': 'conv', 'kernel_l2': 0.1},)), "layers='conv' matches no layer"),
        (config(penalties=({'kernel_l3': 0.1},)), 'unknown field config.penalties[0].kernel_l3'),
        (config(loss='mse'), "config.loss='mse' reconstructs the input (784 features), but model 'mlp' outputs (10,)"),
        (config(early_stopping={'monitor': 'val_f1'}), "monitor (a metric of this task) 'val_f1'; allowed: "),
    ],
)
def test_bad_fields_are_refused_in_one_line_naming_the_field(bad, expected):
    with pytest.raises(ValueError) as error:
        tasks.build(bad, (784,))
    assert expected in str(error.value) and '\n' not in str(error.value), str(error.value)


def test_every_sweepable_scalar_is_a_hyper_parameter_named_by_its_config_path():
    full = config(
        model={'name': 'mlp', 'hidden_widths': (16,), 'hidden_dropout': 0.1, 'init_scale': 2.0},
        optimizer={
            'name': 'momentum',
            'learning_rate': 0.1,
            'transforms': (
                {'name': 'clip_by_global_norm', 'max_norm': 1.0},
                {'name': 'add_decayed_weights', 'weight_decay': 1e-4},
            ),
        },
        penalties=({'layers': 'dense_0', 'kernel_l1': 1e-3, 'activity_l2': 1e-2},),
    )
    task, hparams = tasks.build(full, (784,))
    assert {name: float(value) for name, value in hparams.items()} == pytest.approx(
        {
            'model.hidden_dropout': 0.1,
            'model.init_scale': 2.0,
            'optimizer.learning_rate': 0.1,
            'optimizer.momentum': 0.9,
            'optimizer.transforms[0].max_norm': 1.0,
            'optimizer.transforms[1].weight_decay': 1e-4,
            'penalties[0].kernel_l1': 1e-3,
            'penalties[0].activity_l2': 1e-2,
        }
    )
    assert task.reads_activations
    with pytest.raises(ValueError, match="cannot sweep 'model.hidden_widths'.*sweepable: model.hidden_dropout"):
        tasks.member_hparams(hparams, {'model.hidden_widths': 3})


def test_decoupled_decay_sits_between_the_optimizer_and_the_learning_rate(data):
    """sgd + add_decayed_weights: w <- w - lr·(g + wd·w) on kernels only; a gradient clip comes first."""
    learning_rate, decay = 0.1, 0.01
    decayed, hparams = mlp_task(
        'sgd', learning_rate, BATCH, transforms=({'name': 'add_decayed_weights', 'weight_decay': decay},)
    )
    plain, plain_hparams = mlp_task('sgd', learning_rate, BATCH)
    state = train.init_state(plain, plain_hparams, jax.random.PRNGKey(0), (784,))
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    without, _ = train.train_step(plain, state, x, y)
    stepped, _ = train.train_step(decayed, train.init_state(decayed, hparams, jax.random.PRNGKey(0), (784,)), x, y)
    kernel, bias = state.params['dense_0']['kernel'], state.params['dense_0']['bias']
    np.testing.assert_allclose(
        stepped.params['dense_0']['kernel'],
        without.params['dense_0']['kernel'] - learning_rate * decay * kernel,
        atol=1e-7,
    )
    np.testing.assert_array_equal(stepped.params['dense_0']['bias'], without.params['dense_0']['bias'])
    del bias
    clipped, clipped_hparams = mlp_task(
        'sgd',
        learning_rate,
        BATCH,
        transforms=(
            {'name': 'add_decayed_weights', 'weight_decay': decay},
            {'name': 'clip_by_global_norm', 'max_norm': 1e-3},
        ),
    )
    clipped_step, _ = train.train_step(
        clipped, train.init_state(clipped, clipped_hparams, jax.random.PRNGKey(0), (784,)), x, y
    )
    change = jax.tree.map(lambda a, b: a - b, clipped_step.params, state.params)
    norm_without_decay = optax.tree.norm(jax.tree.map(lambda a, b: a - b, stepped.params, state.params))
    assert norm_without_decay > 1e-3 * learning_rate * 10  # the clip really binds
    # Clipped gradient (norm 1e-3) plus the unclipped decay: the decay was not clipped, so it came after the clip.
    decay_part = jax.tree.map(lambda p: jnp.zeros_like(p), state.params)
    decay_part['dense_0']['kernel'] = -learning_rate * decay * kernel
    decay_part['output']['kernel'] = -learning_rate * decay * state.params['output']['kernel']
    gradient_part = jax.tree.map(lambda a, b: a - b, change, decay_part)
    np.testing.assert_allclose(optax.tree.norm(gradient_part), learning_rate * 1e-3, rtol=1e-3)


def test_a_schedule_sets_the_learning_rate_of_each_step_and_takes_a_traced_peak(data):
    schedule = {'name': 'step_decay', 'boundaries': (2,), 'factor': 0.1}
    task, hparams = mlp_task('sgd', 0.1, BATCH)
    scheduled, scheduled_hparams = tasks.build(config(model__hidden_widths=(32,), optimizer__schedule=schedule), (784,))
    assert [
        float(optimizers.learning_rate_at({'schedule': schedule}, 0.1, step)) for step in range(4)
    ] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    for rate in (0.1, 0.3):  # two members' peaks through one compiled step
        hp = tasks.member_hparams(scheduled_hparams, {'optimizer.learning_rate': rate})
        state = train.init_state(scheduled, hp, jax.random.PRNGKey(0), (784,))
        run = jax.jit(lambda s: jax.lax.scan(lambda s, _: train.train_step(scheduled, s, x, y), s, None, 3)[0])
        after = run(state)
        # By hand: the same three plain SGD steps with rates rate, rate, rate/10.
        reference = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
        for step_rate in (rate, rate, rate / 10):
            plain_hp = tasks.member_hparams(hparams, {'optimizer.learning_rate': step_rate})
            reference, _ = train.train_step(task, reference.replace(hparams=plain_hp), x, y)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), after.params, reference.params
        )


@pytest.mark.parametrize('name', list(optimizers.SCHEDULES))
def test_every_schedule_takes_a_traced_peak_and_matches_optax(name):
    fields = {'boundaries': (3,), 'transition_steps': 2, 'decay_rate': 0.5, 'decay_steps': 8, 'warmup_steps': 2,
              'end_value': 0.01}  # fmt: skip
    schedule = {'name': name, **{k: v for k, v in fields.items() if k in optimizers.SCHEDULES[name].fields}}
    steps = jnp.arange(10)
    peaks = jnp.asarray([0.1, 0.3])
    rate_at = lambda peak, t: optimizers.learning_rate_at({'schedule': schedule}, peak, t)
    traced = jax.jit(jax.vmap(lambda peak: jax.vmap(lambda t: rate_at(peak, t))(steps)))(peaks)  # swept peaks
    reference = {
        'constant': lambda peak: optax.constant_schedule(peak),
        'step_decay': lambda peak: optax.piecewise_constant_schedule(peak, {3: 0.1}),
        'exponential_decay': lambda peak: optax.exponential_decay(peak, 2, 0.5),
        'cosine_decay': lambda peak: optax.cosine_decay_schedule(peak, 8),
        'warmup_cosine_decay': lambda peak: optax.warmup_cosine_decay_schedule(0.0, peak, 2, 8, 0.01),
    }[name]
    for row, peak in zip(traced, (0.1, 0.3)):
        np.testing.assert_allclose(row, [reference(peak)(int(t)) for t in steps], rtol=1e-5, atol=1e-8)


def test_a_one_seed_sweep_of_three_l2_strengths_gives_three_members_each_equal_to_its_run_alone(data):
    task, hparams = mlp_task('sgd', 0.1, BATCH, penalties=({'kernel_l2': 0.0},))
    strengths = [0.0, 1e-3, 1e-2]
    members = runner.grid([0], {'penalties[0].kernel_l2': strengths})
    train_members = lambda members: runner.train_variant(
        task,
        hparams,
        members,
        data,
        (data.validation_images, data.validation_labels),
        epochs=2,
        name='l2',
        log=lambda line: None,
    )
    sweep, runs = train_members(members)
    assert list(runs) == [f'seed=0,penalties[0].kernel_l2={s:g}' for s in strengths]
    finals = [run['history'][-1]['train_loss'] for run in runs.values()]
    assert len(set(finals)) == 3
    kernel_norms = [float(jnp.sum(train.member(sweep, i).params['dense_0']['kernel'] ** 2)) for i in range(3)]
    assert kernel_norms[0] > kernel_norms[1] > kernel_norms[2]  # a stronger penalty keeps the weights smaller
    for index, member in enumerate(members):
        alone, alone_runs = train_members([member])
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
            train.member(sweep, index).params,
            train.member(alone, 0).params,  # one member keeps the member axis
        )
        label = runner.member_label(member)
        np.testing.assert_allclose(
            runs[label]['history'][-1]['train_loss'], alone_runs[label]['history'][-1]['train_loss'], rtol=1e-4
        )
    # Strength 0 is the plain task.
    plain, plain_hparams = mlp_task('sgd', 0.1, BATCH)
    unpenalised, _ = runner.train_variant(
        plain, plain_hparams, [{'seed': 0}], data, None, epochs=2, name='plain', log=lambda line: None
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        train.member(unpenalised, 0).params,
        train.member(sweep, 0).params,
    )


@pytest.mark.parametrize(
    'loss, optimizer, rates', [('mse', 'momentum', [1e-3, 3e-3]), ('binary_cross_entropy', 'adam', [2e-3, 4e-3])]
)
def test_an_autoencoder_trains_with_the_same_fit_and_its_members_equal_their_runs_alone(loss, optimizer, rates):
    images = jax.random.uniform(jax.random.PRNGKey(0), (640, 784))
    # Low-rank images, so that an 8-unit bottleneck can learn them.
    images = jax.nn.sigmoid(4 * (images[:, :8] - 0.5) @ jax.random.normal(jax.random.PRNGKey(1), (8, 784)))
    unlabeled = train.Data(images[:512], None, images[512:], None)
    task, hparams = mlp_task(optimizer, rates[0], BATCH, model='autoencoder', loss=loss, hidden_widths=(32, 8))
    assert task.loss.targets == 'inputs'
    members = [tasks.member_hparams(hparams, {'optimizer.learning_rate': rate}) for rate in rates]
    keys = [jax.random.PRNGKey(seed) for seed in (0, 1)]
    sweep = train.init_members(task, members, train.stack(keys), (784,))
    assert sweep.params['reconstruction']['kernel'].shape == (2, 32, 784)
    # The mean absolute reconstruction error (the loss of binary cross-entropy has the targets' entropy as floor).
    initial = jax.vmap(lambda s: train.evaluate(task, s, unlabeled.validation_images, None))(sweep)['mae']
    sweep, history = train.fit(task, sweep, unlabeled, epochs=6, data_key=jax.random.PRNGKey(2), members=True)
    for index in range(2):
        errors = [float(initial[index])] + [row['val_mae'][index] for row in history]
        assert errors[-1] < 0.8 * errors[0], errors
        alone, alone_history = train.fit(
            task,
            train.init_state(task, members[index], keys[index], (784,)),
            unlabeled,
            epochs=6,
            data_key=jax.random.PRNGKey(2),
        )
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
            train.member(sweep, index).params,
            alone.params,
        )
        np.testing.assert_allclose(history[-1]['val_mae'][index], alone_history[-1]['val_mae'], rtol=1e-4)


def test_keras_penalties_on_kernel_bias_and_activity_follow_keras_formulas(data):
    """The lecture's Dense(kernel_regularizer=l1(a), bias_regularizer=l2(b), activity_regularizer=l2(c)) in one
    entry: a·Σ|W| + b·Σbias² + c·Σactivation²/batch, on the named layer only."""
    a, b, c = 1e-3, 0.1, 0.01
    task, hparams = mlp_task(
        'sgd',
        0.1,
        BATCH,
        hidden_widths=(16, 8),
        penalties=({'layers': '^dense_0$', 'kernel_l1': a, 'bias_l2': b, 'activity_l2': c},),
    )
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    params = jax.tree.map(lambda leaf: leaf + 0.01, state.params)  # non-zero biases
    x = data.train_images[:BATCH]
    _, sown = task.model(hparams).apply({'params': params}, x, train=False, mutable=['intermediates'])
    activation = np.maximum(x @ params['dense_0']['kernel'] + params['dense_0']['bias'], 0)
    expected = (
        a * np.abs(params['dense_0']['kernel']).sum()
        + b * np.square(params['dense_0']['bias']).sum()
        + c * np.square(activation).sum() / BATCH
    )
    np.testing.assert_allclose(task.penalty(params, sown['intermediates'], hparams), expected, rtol=1e-5)


def test_early_stopping_can_be_turned_on_from_its_full_default_config():
    """early_stopping_config lists every Keras argument, so --config.early_stopping.* can set any; off until
    `enabled` (or a field given in code)."""
    config = dict(model={'name': 'mlp', 'hidden_widths': (8,)}, optimizer={'name': 'sgd', 'learning_rate': 0.1},
                  batch_size=4)  # fmt: skip
    off = tasks.early_stopping_config()
    assert tasks.build({**config, 'early_stopping': off}, (4,))[0].early_stopping is None
    on = tasks.early_stopping_config()
    on.enabled, on.patience, on.monitor = True, 3, 'train_loss'
    rule = tasks.build({**config, 'early_stopping': on}, (4,))[0].early_stopping
    assert rule is not None and rule.patience == 3 and rule.monitor == 'train_loss' and rule.baseline is None
    assert tasks.early_stopping_config(patience=2).enabled
    bad = tasks.early_stopping_config()
    bad.mode = 'sideways'
    with pytest.raises(ValueError, match='config.early_stopping.*sideways'):
        tasks.build({**config, 'early_stopping': bad}, (4,))


# Each optimizer with its constants away from their defaults, and optax's own optimizer with the same ones.
CONSTANTS = {
    'sgd': ({}, lambda rate: optax.sgd(rate)),
    'momentum': ({'momentum': 0.5}, lambda rate: optax.sgd(rate, momentum=0.5)),
    'nesterov': ({'momentum': 0.5}, lambda rate: optax.sgd(rate, momentum=0.5, nesterov=True)),
    'rmsprop': ({'rho': 0.5, 'epsilon': 1e-3}, lambda rate: optax.rmsprop(rate, decay=0.5, eps=1e-3)),
    'adam': ({'b1': 0.5, 'b2': 0.9, 'epsilon': 1e-3}, lambda rate: optax.adam(rate, b1=0.5, b2=0.9, eps=1e-3)),
}


def _updates(chain, steps=3):
    """The params after `steps` updates of `chain` on a fixed quadratic."""
    params = {'w': jnp.asarray([1.0, -2.0, 0.5])}
    state = chain.init(params)
    for _ in range(steps):
        grads = jax.tree.map(lambda w: 2.0 * w + 0.3, params)
        updates, state = chain.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params['w']


def _chain(config):
    values = optimizers.sweepable_defaults(config)
    return optimizers.build(config, {path: jnp.asarray(value, jnp.float32) for path, value in values.items()})


@pytest.mark.parametrize('name', list(optimizers.OPTIMIZERS))
def test_every_optimizer_constant_listed_by_optimizer_config_reaches_optax(name):
    """optimizer_config lists every optimizer's constants; the named one's, set as --config.optimizer.X would set
    them, give optax's own optimizer's steps, and the others' (at their defaults) change nothing."""
    assert set(optimizers.OPTIMIZER_FIELDS) <= set(tasks.optimizer_config(name, 0.1))
    constants, reference = CONSTANTS[name]
    config = tasks.optimizer_config('sgd', 0.1)  # named sgd first, switched as the command line would switch it
    config.name = name
    for field, value in constants.items():
        config[field] = value
    np.testing.assert_allclose(_updates(_chain(tasks.plain(config))), _updates(reference(0.1)), rtol=1e-6)


def test_a_constant_the_named_optimizer_does_not_use_is_refused_unless_at_its_default():
    config = tasks.optimizer_config('adam', 0.1)
    config.rho = 0.5
    with pytest.raises(ValueError, match=r"optimizer.rho=0.5 does not apply to optimizer 'adam' \(its fields: b1"):
        _chain(tasks.plain(config))
    with pytest.raises(ValueError, match='unknown field optimizer.beta'):
        tasks.optimizer_config('adam', 0.1, beta=0.5)


def test_a_schedule_can_be_chosen_and_set_from_the_listed_schedule_fields():
    """optimizer_config's schedule lists every schedule's fields: 'constant' is the bare rate, and naming another
    one and filling its fields gives optax's schedule; a required field left unset is refused by name."""
    config = tasks.optimizer_config('sgd', 0.1)
    constant = [float(optimizers.learning_rate_at(tasks.plain(config), 0.1, step)) for step in range(3)]
    assert constant == pytest.approx([0.1] * 3)
    config.schedule.name = 'cosine_decay'
    with pytest.raises(ValueError, match='optimizer.schedule.decay_steps must be set'):
        optimizers.learning_rate_at(tasks.plain(config), 0.1, 0)
    config.schedule.decay_steps, config.schedule.alpha = 8, 0.1
    rates = [float(optimizers.learning_rate_at(tasks.plain(config), 0.1, step)) for step in range(10)]
    np.testing.assert_allclose(rates, [optax.cosine_decay_schedule(0.1, 8, 0.1)(t) for t in range(10)], rtol=1e-6)
    config.schedule.boundaries = (3,)
    with pytest.raises(ValueError, match=r"boundaries=\(3,\) does not apply to schedule 'cosine_decay'"):
        optimizers.learning_rate_at(tasks.plain(config), 0.1, 0)
