"""Pretraining: when does an autoencoder's encoder, or per-unit subsample pretraining, help a classifier?

A denoising autoencoder (masking noise, binary cross-entropy, mirrored decoder) learns from all training images
without labels. Its encoder is then cut out and given a fresh softmax head, and the classifier is trained on 100,
1,000 or all labels (class-balanced subsets of the training split), fully fine-tuned (`ae_finetune`) or with the
encoder frozen (`ae_frozen`), against the same classifier from random initialisation (`random`) and from subsample
pretraining (`subsample`: every group of first-layer units first trained alone, with its own head, on its own random
half of the labeled images). Each seed has its own autoencoder and its own label subsets, so the seeds' spread holds
the luck of the labels drawn; with all labels every method trains until its validation accuracy stops improving
(config.all_patience epochs; the best epoch's weights are kept). The encoder's learning-rate factor (fine-tuning)
and the dropout (frozen) are chosen on the validation split; test is never looked at. Each method's candidates, and
with all labels its seeds, are one vmapped program; the test error reported is the final (or restored) weights',
mean over seeds. The claims pair each pretrained method with random initialisation over the seeds, by test error.
`:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from nets import data as data_lib, experiment, pretraining, report, results, runner, tasks, train, validation

METHODS = ('random', 'ae_finetune', 'ae_frozen', 'subsample')
# Kingma et al. 2014, Table 1 (test error): a plain neural net and a contractive autoencoder (CAE);
# Hinton & Salakhutdinov 2006: 1.2% with all labels after pretraining.
PUBLISHED = {'NN (Kingma et al.)': {100: 0.258, 1000: 0.107}, 'CAE (Kingma et al.)': {100: 0.1347, 1000: 0.0477}}
PUBLISHED_ALL = {'pretrained DBN-init net (Hinton & Salakhutdinov)': 0.012}


def _label_count(path: str, value) -> None:
    if value != 'all' and not (isinstance(value, str) and value.isdigit() and int(value) > 0):
        raise ValueError(f"config.{path} must be 'all' or a number of labels such as '100', got {value!r}")


def _labels_fit_the_classes_and_the_split(config) -> None:
    classes, labels = data_lib.CLASSES[config['dataset']], config['labels']
    available = config['train_limit'] or data_lib.TRAIN_EXAMPLES[config['dataset']] - config['validation_size']
    for index, count in enumerate(labels):
        if count != 'all' and (int(count) % classes or int(count) > available):
            validation.refuse(
                f'labels[{index}]',
                count,
                f'a multiple of the {classes} classes, at most the {available} training images',
            )
    for name in ('passes', 'batch_sizes'):
        if len(config[name]) != len(labels):
            validation.refuse(name, config[name], f'one entry per entry of labels {labels}')


CONFIG_RULES = {  # the fields only this experiment has; nets.validation checks the shared ones
    'labels': validation.several(_label_count),
    'masking_noise': validation.rate,
    'batch_sizes': validation.counts,
    'encoder_learning_rate_factors': validation.several(validation.positive),
    'epoch_size': validation.count,
    'frozen_hidden_dropout': validation.several(validation.rate),
    'passes': validation.counts,
    'all_patience': validation.count,
    'group_width': validation.count,
    'subsample_fraction': validation.fraction,
}


def _group_width_divides_the_first_layer(config) -> None:
    if not config['hidden_widths']:
        validation.refuse('hidden_widths', config['hidden_widths'], 'at least one hidden layer (the encoder)')
    width, group = config['hidden_widths'][0], config['units']['group_width']
    if width % group:
        validation.refuse('units.group_width', group, f'a divisor of the first hidden layer ({width} units)')


CONFIG_CHECKS = (_group_width_divides_the_first_layer, _labels_fit_the_classes_and_the_split)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # 5000 validation images held out of the training split; they choose the encoder's learning-rate factor.
    # Five confirmation seeds, each with its own autoencoder and label subsets; 0-2 developed the recipe (with one
    # autoencoder and one subset, both of seed 0, shared by the seeds).
    config = experiment.base_config(
        seeds=(100, 101, 102, 103, 104), development_seeds=(0, 1, 2), validation_size=5000, checkpoint_every=10
    )
    config.labels = ('100', '1000', 'all')  # labeled images: class-balanced subsets drawn by each seed, or all
    config.hidden_widths = (512, 256)
    config.activation = 'relu'
    config.kernel_init = 'glorot_uniform'
    # The autoencoder: masking noise on the input (input dropout), the clean image as the target.
    config.autoencoder = ml_collections.ConfigDict(
        dict(
            epochs=20,
            # Chosen on validation by a probe before the full run (the report gives its numbers).
            masking_noise=0.8,
            optimizer=tasks.optimizer_config('adam', 1e-3),
            batch_size=128,
            loss='binary_cross_entropy',
        )
    )  # one autoencoder per classifier seed, all in one vmapped program
    # The classifier: encoder + softmax head, the recipe.
    config.input_dropout, config.hidden_dropout = 0.2, 0.5
    config.optimizer = tasks.optimizer_config('adam', 3e-4)
    config.batch_sizes = (32, 32, 128)  # per entry of config.labels
    # Passes over the labeled images, per entry of config.labels; with all labels, at most this many, as early
    # stopping on the validation accuracy (patience all_patience) ends each member.
    config.passes = (200, 200, 30)
    config.all_patience = 5
    config.epoch_size = 10000  # a small labeled set is repeated so that an epoch has about this many images
    # Candidates, chosen on validation: ae_finetune's factor on the encoder's learning rate, and ae_frozen's dropout
    # (the frozen encoder never sees input dropout: it cannot adapt to noise inside it).
    config.encoder_learning_rate_factors = (1.0, 0.1)
    config.frozen_hidden_dropout = (0.0, 0.5)
    # Subsample pretraining: groups of first-layer units, each with its own head and random subsample.
    config.units = ml_collections.ConfigDict(
        dict(
            group_width=8,
            subsample_fraction=0.5,
            steps=500,
            batch_size=32,
            optimizer=tasks.optimizer_config('adam', 1e-3),
        )
    )
    if experiment.is_quick(arg, 'pretraining'):
        config.train_limit, config.test_limit, config.validation_size = 2000, 500, 500
        config.labels, config.passes, config.epoch_size, config.batch_sizes = ('100',), (20,), 1000, (32,)
        config.seeds, config.hidden_widths, config.development_seeds = (0, 1), (32, 16), ()  # it confirms nothing
        config.autoencoder.epochs, config.units.steps, config.units.group_width = 2, 20, 4
    return config


def classifier_config(config, batch_size: int = 128, transforms=(), **model) -> dict:
    """The classifier's task: the encoder's widths and a softmax head, with input and hidden dropout."""
    return {
        'model': {
            'name': 'mlp',
            'hidden_widths': tuple(config.hidden_widths),
            'activation': config.activation,
            'kernel_init': config.kernel_init,
            'input_dropout': config.input_dropout,
            'hidden_dropout': config.hidden_dropout,
            **model,
        },
        'optimizer': {**config.optimizer.to_dict(), 'transforms': transforms},
        'batch_size': batch_size,
    }


def method_spec(config, method: str, batch_size: int) -> tuple[dict, dict]:
    """A method's classifier task config and its swept candidates (config path -> values)."""
    if method == 'ae_finetune':
        transforms = pretraining.fine_tuning_transforms('lower_learning_rate', 1.0)
        swept = {'optimizer.transforms[0].factor': tuple(config.encoder_learning_rate_factors)}
        return classifier_config(config, batch_size, transforms), swept
    if method == 'ae_frozen':
        transforms = pretraining.fine_tuning_transforms('frozen')
        swept = {'model.hidden_dropout': tuple(config.frozen_hidden_dropout)}
        return classifier_config(config, batch_size, transforms, input_dropout=0.0), swept
    return classifier_config(config, batch_size), {}


def autoencoder_config(config) -> dict:
    """The denoising autoencoder's task."""
    ae = config.autoencoder
    model = classifier_config(config)['model'] | {'name': 'autoencoder', 'input_dropout': ae.masking_noise}
    return {
        'model': {**model, 'hidden_dropout': 0.0},
        'optimizer': ae.optimizer.to_dict(),
        'loss': ae.loss,
        'batch_size': ae.batch_size,
    }


def unit_config(config) -> dict:
    """One group of first-layer units with a head of its own, trained without dropout."""
    units = config.units
    return {
        'model': {'name': 'mlp', 'hidden_widths': (units.group_width,), 'activation': config.activation},
        'optimizer': units.optimizer.to_dict(),
        'batch_size': units.batch_size,
    }


def labeled_data(config, splits, labels: str, data: train.Data, seed: int | None) -> tuple[train.Data, np.ndarray]:
    """The labeled training images (repeated up to about config.epoch_size) as train.Data, and their indices: all of
    the training split, or the class-balanced subset that `seed` draws."""
    if labels == 'all':
        indices = np.arange(len(splits.train_labels))
    else:
        indices = data_lib.few_label_subset(splits.train_labels, int(labels) // data_lib.CLASSES[config.dataset], seed)
    repeated = np.tile(indices, max(1, config.epoch_size // len(indices)))
    return train.Data(
        data.train_images[repeated], data.train_labels[repeated], data.validation_images, data.validation_labels
    ), indices


def stages(run) -> dict:
    """The autoencoders, then at every label count the subsample-pretrained first layers and every method (its
    candidate chosen on validation over all seeds' members); returns what summarize reads."""
    config, seeds, input_shape = run.config, list(run.config.seeds), run.input_shape
    splits, (data, test) = run.splits(), run.data()
    ae_task = tasks.build(autoencoder_config(config), input_shape)
    unlabeled = train.Data(data.train_images, None, data.validation_images, None)
    ae_state, _ = run.variant('autoencoder', ae_task, data=(unlabeled, test), epochs=config.autoencoder.epochs)
    encoders = pretraining.encoder(ae_state.params, ae_state.batch_stats)
    unit_task, unit_hparams = tasks.build(unit_config(config), input_shape)
    chosen_values, chosen_runs, sweeps, swept_paths, first_variant = {}, {}, {}, {}, {}
    for labels, passes, batch_size in zip(config.labels, config.passes, config.batch_sizes):
        # All labels are one set, trained by every seed in one program; a subset is each seed's own, and its own
        # program.
        groups = [(seeds, None)] if labels == 'all' else [([seed], seed) for seed in seeds]
        for member_seeds, subset_seed in groups:
            labeled, indices = labeled_data(config, splits, labels, data, subset_seed)
            epochs = max(1, round(passes * len(indices) / labeled.train_images.shape[0]))
            units, _ = pretraining.pretrain_first_layer(
                unit_task,
                unit_hparams,
                member_seeds,
                data.train_images[indices],
                data.train_labels[indices],
                groups=config.hidden_widths[0] // config.units.group_width,
                subsample_size=max(1, round(config.units.subsample_fraction * len(indices))),
                steps=config.units.steps,
            )
            for method in METHODS:
                task_config, swept = method_spec(config, method, batch_size)
                if labels == 'all':  # trained until the validation accuracy stops improving
                    stop = {'monitor': 'val_accuracy', 'patience': config.all_patience, 'restore_best_weights': True}
                    task_config['early_stopping'] = stop
                task, members = tasks.build(task_config, input_shape), runner.grid(member_seeds, swept)
                # Classifier seed s takes seed s's autoencoder, or its subsample-pretrained layer.
                prepare_state = None
                if method != 'random':
                    pretrained, order = (encoders, seeds) if method.startswith('ae') else (units, member_seeds)
                    chosen = pretraining.take_members(pretrained, [order.index(m['seed']) for m in members])
                    prepare_state = lambda state, chosen=chosen: pretraining.with_encoder(state, chosen)
                key = f'{method}_{labels}'
                name = key if subset_seed is None else f'{key}_seed{subset_seed}'
                _, runs = run.variant(
                    name, task, members=members, data=(labeled, test), epochs=epochs, prepare_state=prepare_state
                )
                sweeps.setdefault(key, {}).update(runs)
                swept_paths[key] = swept
                first_variant.setdefault(key, name)
    for key, runs in sweeps.items():
        if swept_paths[key]:  # ae_finetune's encoder factor or ae_frozen's dropout, by the mean final val accuracy
            (path,) = swept_paths[key]
            chosen_values[key], chosen_runs[key] = run.select_swept(key, runs, path, metric='val_accuracy')
        else:
            chosen_values[key], chosen_runs[key] = None, runs
    if '1000' in config.labels:
        run.choices.append(encoder_use(chosen_runs))
    return {
        'autoencoder': ae_task[0],
        'chosen_values': chosen_values,
        'chosen_runs': chosen_runs,
        'sweeps': sweeps,
        'first_variant': first_variant,
    }


def summarize(run, staged: dict):
    """The reconstruction error and every method's test error, the findings and the figures."""
    config, chosen_runs = run.config, staged['chosen_runs']
    ae_task, ae_state = staged['autoencoder'], run.states['autoencoder']
    test_images = run.data()[1][0]
    mse = np.asarray(pretraining.reconstruction_mse(ae_task, ae_state, test_images, members=True))
    summary = {'reconstruction_mse': float(mse.mean())}
    for labels in config.labels:
        for method in METHODS:
            summary[f'test_error_{method}_{labels}'] = results.mean_test(chosen_runs[f'{method}_{labels}'], 'error')
    # The first-layer weights of the first seed of each method at the last label count, and of the autoencoder.

    def first(key: str) -> train.TrainState:  # the first seed's state of a method at a label count
        name = staged['first_variant'].get(key, key)
        return train.member(run.states[name], 0)

    kernel = lambda key: np.asarray(first(key).params['dense_0']['kernel'])
    first_layers = {m: kernel(f'{m}_{config.labels[-1]}') for m in METHODS}
    first_layers['autoencoder (before fine-tuning)'] = kernel('autoencoder')
    num_train = len(run.splits().train_labels)
    figures = [
        plot_error(os.path.join(run.workdir, 'test_error.png'), config, chosen_runs, num_train),
        plot_reconstructions(os.path.join(run.workdir, 'reconstructions.png'), ae_task, ae_state, test_images),
        plot_features(os.path.join(run.workdir, 'first_layer_features.png'), first_layers),
    ]
    return experiment.Report(
        'Pretraining: autoencoder and subsample pretraining against random initialisation',
        summary,
        sections=[
            report.prose(__doc__, 1, 2),
            describe(config, summary, staged['chosen_values']),
            findings(config, chosen_runs, run.choices),
        ],
        figures=figures,
        claims=verdicts(config, chosen_runs, run.choices),
        records={
            'sweeps': staged['sweeps'],
            'chosen_values': staged['chosen_values'],
            'reconstruction_mse_by_seed': mse.tolist(),
        },
        runs=chosen_runs,  # each method's chosen candidate only
        curves=['train_loss', 'val_loss', 'val_accuracy'],
    )


def verdicts(config, chosen_runs: dict, choices: list) -> list[dict]:
    """The claims, each a paired difference of test error over the seeds: at every label count, each pretrained
    method against random initialisation; and the encoder use chosen on validation against the 6% target at 1,000
    labels."""
    error = lambda run: 1 - run['test']['accuracy']
    texts = {
        'ae_finetune': 'A fine-tuned denoising-autoencoder encoder has lower test error than random init',
        'ae_frozen': 'A frozen denoising-autoencoder encoder with a trained head has lower test error than random init',
        'subsample': 'Subsample pretraining of the first layer has lower test error than random init',
    }
    claims = [
        results.compare(
            f'{text} ({labels} labels)',
            chosen_runs,
            f'{method}_{labels}',
            f'random_{labels}',
            'test_error',
            error,
            expected='less',
        )
        for labels in config.labels
        for method, text in texts.items()
    ]
    if '1000' in config.labels:
        best = next(c['chosen'] for c in choices if c['choice'] == 'encoder_use_1000')
        claims.append(
            results.claim(
                f'Autoencoder pretraining reaches at most 6% test error with 1,000 labels ({best}, chosen on '
                'validation)',
                'test_error',
                [f'{best}_1000', '0.06 (target)'],
                results.by_seed(chosen_runs[f'{best}_1000'], error),
                0.06,
                expected='less',
            )
        )
    return claims


def encoder_use(chosen_runs: dict) -> dict:
    """The choice the ≤ 6% verdict reads: fine-tuned or frozen encoder at 1,000 labels, by the higher mean final
    validation accuracy (never by test error)."""
    scores = experiment.member_values(
        {m: chosen_runs[f'{m}_1000'] for m in METHODS[1:3]}, experiment.final('val_accuracy')
    )
    return experiment.choose('encoder_use_1000', scores, metric='val_accuracy')


def describe(config, summary, chosen_values) -> str:
    """The setup and the table of test errors by label count, with the chosen candidates and published anchors."""
    rows = []
    for labels in config.labels:
        row = [labels] + [f'{100 * summary[f"test_error_{method}_{labels}"]:.2f}%' for method in METHODS]
        row += [f'{chosen_values[f"{method}_{labels}"]:g}' for method in ('ae_finetune', 'ae_frozen')]
        published = [PUBLISHED[name].get(int(labels)) if labels != 'all' else None for name in PUBLISHED]
        rows.append(row + [f'{100 * p:.2f}%' if p else '' for p in published])
    widths = '-'.join(map(str, config.hidden_widths))
    ae, units = config.autoencoder, config.units
    return (
        f'Classifier 784-{widths}-10 {config.activation} ({config.kernel_init}), input dropout '
        f'{config.input_dropout}, dropout {config.hidden_dropout}, Adam {config.optimizer.learning_rate}, batch sizes '
        f'{tuple(config.batch_sizes)} and passes over the labeled images {tuple(config.passes)} for labels '
        f'{tuple(config.labels)} (with all labels at most {config.passes[-1]}, ending when the validation accuracy '
        f'has not improved for {config.all_patience} epochs, the best weights kept); {len(config.seeds)} seeds, '
        f'each with its own class-balanced label subsets and autoencoder; validation {config.validation_size} '
        f'images held out of the '
        f'training split. Autoencoder: mirrored decoder, {ae.loss}, masking noise {ae.masking_noise} (the default '
        f'level was chosen by a probe before the full run: one 20-epoch autoencoder per level, fine-tuned at 1,000 '
        f'labels with dropout 0.5, 2 seeds, validation error: masking 0.3 6.26%, 0.5 5.79%, 0.7 5.52%, 0.8 5.31%; '
        f'heavier corruption makes the encoder infer strokes from their context instead of copying pixels; 0.9 was '
        f'not tried, so the best level may lie above 0.8), Adam {ae.optimizer.learning_rate}, batch '
        f'{ae.batch_size}, {ae.epochs} epochs on the training images without labels, one per seed; '
        f'reconstruction MSE per pixel on test '
        f"{summary['reconstruction_mse']:.4f}. Fine-tuning: `ae_finetune` trains everything, with the encoder's "
        f'learning-rate factor chosen from {tuple(config.encoder_learning_rate_factors)}; `ae_frozen` trains only '
        f'the head, without input dropout, its hidden dropout chosen from {tuple(config.frozen_hidden_dropout)}. '
        f'Subsample pretraining: {config.hidden_widths[0] // units.group_width} groups of {units.group_width} '
        f'first-layer units, each with its own softmax head, {units.steps} steps of batch {units.batch_size} '
        f'(Adam {units.optimizer.learning_rate}) on its own random {units.subsample_fraction:g} of the labeled '
        f'images, then '
        f'assembled into the first layer; the second layer and the head start fresh.\n\n'
        + report.markdown_table(
            ['labels', *[f'{m} test error' for m in METHODS], 'chosen encoder lr factor', 'chosen frozen dropout']
            + [f'published: {name}' for name in PUBLISHED],
            rows,
        )
        + '\n\nPublished anchors: Kingma et al. 2014, Table 1: a plain neural net 25.8% and 10.7% test error with '
        '100 and 1,000 labels, a contractive autoencoder 13.47% and 4.77%; Hinton & Salakhutdinov 2006: 1.2% with '
        'all labels after pretraining.'
    )


def findings(config, chosen_runs, choices) -> str:
    """What the numbers say: each pretrained method against random initialisation, per label count, with the seeds'
    ranges, and the issue's two targets."""
    errors = lambda name: [1 - run['test']['accuracy'] for run in chosen_runs[name].values()]
    spread = lambda values: f'{100 * np.mean(values):.2f}% ({100 * min(values):.2f}–{100 * max(values):.2f})'
    lines = ['## Findings', '']
    for labels in config.labels:
        random = errors(f'random_{labels}')
        parts = []
        for method in METHODS[1:]:
            values = errors(f'{method}_{labels}')
            gain = 100 * (np.mean(random) - np.mean(values))
            verdict = 'clear gain' if max(values) < min(random) else 'worse' if min(values) > max(random) else 'overlap'
            parts.append(f'{method} {spread(values)}: {gain:+.2f} points, seeds {verdict}')
        lines.append(f'- {labels} labels: random {spread(random)}; ' + '; '.join(parts) + '.')
    if '1000' in config.labels:
        best = next(c['chosen'] for c in choices if c['choice'] == 'encoder_use_1000')
        value = np.mean(errors(f'{best}_1000'))
        met = 'met' if value <= 0.06 else 'not met'
        lines.append(
            f'- Target AE pretraining ≤ 6% error with 1,000 labels: {met} ({best}, the encoder use with the higher '
            f'validation accuracy, {100 * value:.2f}% test error).'
        )
    if '100' in config.labels:
        random, tuned = errors('random_100'), errors('ae_finetune_100')
        clear = 'yes' if max(tuned) < min(random) else 'no'
        lines.append(
            f'- A clear gain over random init with 100 labels (every AE fine-tuned seed better than every random '
            f'seed): {clear}, {100 * (np.mean(random) - np.mean(tuned)):+.2f} points.'
        )
    lines.append(
        '\n"seeds clear gain" means every seed of the method beats every seed of random init; "worse" the reverse; '
        'otherwise the seed ranges overlap. Error ranges are min–max over seeds; each seed draws its own label '
        'subsets and trains its own autoencoder, so the ranges hold the luck of the labels drawn too.'
    )
    return '\n'.join(lines)


def plot_error(path: str, config, chosen_runs, num_train: int) -> str:
    """Test error against the number of labels, per method: mean over seeds, the seeds' min and max as bars."""
    counts = [num_train if labels == 'all' else int(labels) for labels in config.labels]
    ((published_all, error_all),) = PUBLISHED_ALL.items()
    with report.figure(path, figsize=(7, 4.5)) as (_, axes):
        axis = axes[0][0]
        for offset, method in enumerate(METHODS):
            errors = [
                [1 - r['test']['accuracy'] for r in chosen_runs[f'{method}_{labels}'].values()]
                for labels in config.labels
            ]
            means = np.array([np.mean(e) for e in errors])
            bars = np.array([[m - min(e), max(e) - m] for m, e in zip(means, errors)]).T
            positions = np.array(counts) * (1 + 0.04 * (offset - 1.5))
            axis.errorbar(positions, 100 * means, yerr=100 * bars, marker='o', capsize=3, label=method)
        for marker, (name, values) in zip(('x', '+'), PUBLISHED.items()):
            axis.scatter(
                list(values), [100 * v for v in values.values()], marker=marker, color='k', label=name, zorder=3
            )
        axis.scatter([num_train], [100 * error_all], marker='*', color='k', zorder=3, label=published_all)
        axis.set(xscale='log', yscale='log', xlabel='labeled training images', ylabel='test error (%), seed min–max')
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3, which='both')
    return path


def plot_reconstructions(path: str, task, state, images, count: int = 12) -> str:
    """Test digits (top row) and the first seed's denoising autoencoder's reconstructions (bottom row)."""
    first = train.member(state, 0)
    shown = images[:count]
    rebuilt = np.asarray(pretraining.reconstruct(task, first, shown))
    with report.figure(path, 2, count, figsize=(count, 2.2)) as (_, axes):
        for column in range(count):
            for row, picture in enumerate((np.asarray(shown[column]), rebuilt[column])):
                axes[row, column].imshow(picture.reshape(28, 28), cmap='gray', vmin=0, vmax=1)
                axes[row, column].axis('off')
        axes[0, 0].set_title('original', fontsize=8, loc='left')
        axes[1, 0].set_title('reconstructed', fontsize=8, loc='left')
    return path


def plot_features(path: str, kernels: dict, count: int = 12) -> str:
    """The first-layer weights of the first `count` units as 28x28 images, a row per network."""
    with report.figure(path, len(kernels), count, figsize=(count, 1.15 * len(kernels))) as (_, axes):
        for row, (name, kernel) in enumerate(kernels.items()):
            for column in range(count):
                weights = kernel[:, column].reshape(28, 28)
                limit = np.abs(weights).max() or 1.0
                axes[row, column].imshow(weights, cmap='RdBu', vmin=-limit, vmax=limit)
                axes[row, column].set(xticks=[], yticks=[])
            axes[row, 0].set_ylabel(name, fontsize=7, rotation=0, ha='right', va='center')
    return path
