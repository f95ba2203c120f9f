"""Input standardization: the lecture's "which situation is better for SGD?", before batch norm.

Toy: least squares on two features of very different scales. The loss contours over the two weights are long thin
ellipses (the Hessian's condition number is the ratio of the feature variances), so a step size small enough for
the steep direction crawls along the shallow one. Standardized features (mean 0, variance 1, statistics of the
training split) make the contours nearly round. Each is trained by minibatch SGD with the core, a grid of step sizes
and the seeds' batch orders as one vmapped program; each gets its fastest step size (the fewest steps until every
seed's training loss stays within 1% of the way to its minimum), and the figure draws its paths over the contours.
MNIST: raw [0, 1] pixels, per-pixel standardized pixels and
PCA-whitened inputs (`nets.preprocessing`, fitted on the training split only), an MLP trained by plain SGD, step
sizes and seeds as one program per preprocessing, the step size chosen on validation. The claims pair the inputs
over the seeds: the toy's steps to 1% per seed, MNIST's validation accuracy after epoch 1 and its test accuracy
averaged over the last config.final_epochs epochs (the step size is constant, so one epoch's number is noisy).
`:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from nets import data as data_lib, experiment, preprocessing, report, results, runner, tasks, train, validation

TOY = ('raw', 'standardize')
MNIST = ('raw', 'standardize', 'pca_whiten')


# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'feature_std': validation.several(validation.positive),
    'true_weights': validation.several(validation.number(), distinct=False),
    'whitening_epsilon': validation.positive,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # MNIST's shuffle is 'shared': the members share each batch (the seeds set the weights).
    # Five confirmation seeds; 0-2 developed the recipe.
    config = experiment.base_config(seeds=(100, 101, 102, 103, 104), development_seeds=(0, 1, 2), checkpoint_every=5)
    config.toy = dict(
        num_train=200,
        num_validation=1000,
        feature_std=(1.0, 10.0),  # raw scales: the Hessian's condition number is (10 / 1)² = 100
        true_weights=(2.0, 0.2),  # both features move y by the same amount
        noise=0.5,
        problem_seed=0,
        batch_size=20,
        epochs=30,
        learning_rates=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        shuffle='per_member',  # each seed its own batch order: from w = 0, the seeds are SGD's only randomness
    )
    config.whitening_epsilon = 0.1  # in squared [0, 1]-pixel units; the top eigenvalue of MNIST's covariance is ~5
    config.model = tasks.model_config(hidden_widths=(128, 128), activation='relu', kernel_init='he_normal')
    config.optimizer = tasks.optimizer_config('sgd', transforms=())  # the rates: learning_rates
    config.update(tasks.task_config())
    config.epochs = 10
    config.learning_rates = (0.1, 0.3, 1.0, 3.0)
    config.final_epochs = 3  # the claims' MNIST test accuracy: the mean over the last 3 epochs
    if experiment.is_quick(arg, 'standardization'):
        config.seeds, config.epochs, config.learning_rates = (0, 1), 2, (0.01, 0.1)
        config.development_seeds, config.final_epochs = (), 1  # a smoke run: it confirms nothing
        config.train_limit, config.validation_size, config.test_limit = 2000, 1000, 1000
        config.model.hidden_widths = (32,)
        config.toy.epochs, config.toy.learning_rates = 10, (0.003, 0.01, 0.1, 1.0)
    return config


def toy_problem(toy) -> tuple[np.ndarray, ...]:
    """Two independent zero-mean features with standard deviations `feature_std`, y = x·w* + noise."""
    rng = np.random.default_rng(toy.problem_seed)
    total = toy.num_train + toy.num_validation
    x = rng.standard_normal((total, 2)) * np.asarray(toy.feature_std)
    y = x @ np.asarray(toy.true_weights) + toy.noise * rng.standard_normal(total)
    split = toy.num_train
    return x[:split], y[:split], x[split:], y[split:]


def least_squares_loss(x: np.ndarray, y: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """½·mean((x·w + b - y)²) for every leading index of kernel [..., 2] and bias [...], in float64."""
    residual = np.einsum('nf,...f->...n', x, kernel) + bias[..., None] - y
    return 0.5 * np.mean(residual**2, -1)


def convergence(excess: np.ndarray, steps_per_epoch: int) -> dict:
    """From the relative excess loss [epochs, seeds]: the steps until every seed stays within 1% (-1: never, or
    diverged) and the mean final excess (inf when a seed diverged)."""
    within = np.all(excess <= 0.01, axis=1)
    # Within from that epoch on: the first epoch after the last one where some seed was above 1%.
    above = np.nonzero(~within)[0]
    first = 0 if not len(above) else above[-1] + 1
    steps = int((first + 1) * steps_per_epoch) if first < len(within) else -1
    final = float(np.mean(excess[-1])) if np.all(np.isfinite(excess[-1])) else float('inf')
    return {'steps_to_1_percent': steps, 'final': final}


def fastest_first(found: dict) -> tuple[float, float]:
    """Sort key of a step size's `convergence`: fewer steps to 1% first (never: last), then a lower final excess."""
    steps = found['steps_to_1_percent']
    return (steps if steps > 0 else np.inf, found['final'])


def stages(run) -> dict:
    """The toy, raw and standardized, each with its fastest step size, then MNIST raw, standardized and PCA-whitened,
    each with its step size chosen on validation; returns the toy's paths and chosen runs and MNIST's chosen runs."""
    return {**toy_stage(run), **mnist_stage(run)}


def toy_stage(run) -> dict:
    """SGD on the 2-D least-squares problem, raw and standardized: each input's chosen runs and SGD paths."""
    config, toy = run.config, run.config.toy
    x, y, x_validation, y_validation = toy_problem(toy)
    task_config = {
        'model': {'name': 'mlp', 'hidden_widths': (), 'num_classes': 1, 'init_scale': 0.0},
        'optimizer': {'name': 'sgd', 'learning_rate': 0.01},
        'loss': 'half_squared_error',
        'batch_size': toy.batch_size,
    }
    task, hparams = tasks.build(task_config, (2,))
    steps_per_epoch = toy.num_train // toy.batch_size
    chosen_runs, paths = {}, {}
    for name in TOY:
        affine = preprocessing.fit(name, x)  # training split only
        inputs = [np.asarray(affine(part), np.float32) for part in (x, x_validation)]
        data = train.Data(
            *jax.device_put((inputs[0], y.astype(np.float32), inputs[1], y_validation.astype(np.float32)))
        )
        weights = []  # (kernel [members, 2], bias [members]) after every epoch

        def record(epoch, state, history, weights=weights):
            output = state.params['output']
            weights.append((np.asarray(output['kernel'])[..., 0], np.asarray(output['bias'])[..., 0]))

        # Not a run.variant: each seed has its own batch order (config.shuffle is MNIST's), and the paths come from
        # a hook that must see every epoch, so the toy trains in seconds without checkpoints (a resume retrains it).
        members = runner.grid(config.seeds, {'optimizer.learning_rate': toy.learning_rates})
        _, runs = runner.train_variant(
            task,
            hparams,
            members,
            data,
            None,
            epochs=toy.epochs,
            name=f'toy_{name}',
            data_seed=config.data_seed,
            shuffle=toy.shuffle,
            on_epoch_end=record,
            log=lambda line: None,
        )
        # The excess of the training loss over its minimum, as a fraction of where SGD started (w = 0, b = 0).
        design = np.concatenate([inputs[0].astype(np.float64), np.ones((len(y), 1))], 1)
        solution = np.linalg.lstsq(design, y, rcond=None)[0]
        optimum = least_squares_loss(inputs[0], y, solution[:2], np.asarray(solution[2]))
        initial = least_squares_loss(inputs[0], y, np.zeros(2), np.asarray(0.0))
        kernels, biases = np.stack([k for k, _ in weights]), np.stack([b for _, b in weights])  # [epochs, members..]
        with np.errstate(all='ignore'):  # a diverged member's loss is inf or NaN
            excess = (least_squares_loss(inputs[0], y, kernels, biases) - optimum) / (initial - optimum)
        by_rate = {}
        for rate in toy.learning_rates:
            columns = [i for i, run in enumerate(runs.values()) if run['hparams']['optimizer.learning_rate'] == rate]
            # Per seed, for the claim; a seed never within 1% counts as one epoch past the end (a lower bound).
            never = (toy.epochs + 1) * steps_per_epoch
            per_seed = [convergence(excess[:, [i]], steps_per_epoch)['steps_to_1_percent'] for i in columns]
            per_seed = [steps if steps > 0 else never for steps in per_seed]
            by_rate[rate] = {
                'columns': columns,
                'per_seed': per_seed,
                **convergence(excess[:, columns], steps_per_epoch),
            }
        # The fastest step size: fewest steps until every seed is within 1%, then the lowest final excess (training
        # loss: converging is the point here).
        speeds = {r: fastest_first(found) for r, found in by_rate.items()}
        rate = run.select(
            f'toy_{name}', speeds, metric='train_steps_to_1_percent', rule='min', note='then final excess'
        )
        columns = by_rate[rate]['columns']
        chosen_runs[f'toy_{name}'] = {label: runs[label] for i, label in enumerate(runs) if i in columns}
        paths[name] = {
            'steps_by_seed': dict(zip(config.seeds, by_rate[rate]['per_seed'])),
            'kernels': kernels[:, columns],
            'inputs': inputs[0],
            'solution': solution,
            'rate': rate,
            'by_rate': {
                r: {k: v for k, v in found.items() if k == 'steps_to_1_percent' or k == 'final'}
                for r, found in by_rate.items()
            },
        }
    return {'toy_runs': chosen_runs, 'paths': paths}


def mnist_stage(run) -> dict:
    """The MLP on raw, standardized and PCA-whitened MNIST: each input's chosen step size and its members' runs."""
    config, splits = run.config, run.splits()
    images = [data_lib.normalize(part) for part in (splits.train_images, splits.validation_images, splits.test_images)]
    labels = [
        jax.device_put(np.asarray(part, np.int32))
        for part in (splits.train_labels, splits.validation_labels, splits.test_labels)
    ]
    optimizer = {**config.optimizer.to_dict(), 'learning_rate': config.learning_rates[0]}  # the members replace it
    task = run.task({'optimizer': optimizer})
    rates, chosen_runs = {}, {}
    for name in MNIST:
        affine = preprocessing.fit(name, images[0], config.whitening_epsilon)  # training split only
        train_x, validation_x, test_x = (affine(jax.device_put(part)) for part in images)
        data = train.Data(train_x, labels[0], validation_x, labels[1]), (test_x, labels[2])
        sweep = {'optimizer.learning_rate': config.learning_rates}
        _, runs = run.variant(f'mnist_{name}', task, sweep=sweep, data=data, test_curve=True)  # for the claims
        rates[name], chosen_runs[f'mnist_{name}'] = run.select_swept(
            f'mnist_{name}', runs, 'optimizer.learning_rate', metric='val_accuracy'
        )
    return {'mnist_rates': rates, 'mnist_runs': chosen_runs}


def summarize(run, staged: dict):
    """The toy's condition numbers and convergence, MNIST's accuracies, the tables and the paths' figure."""
    summary = {}
    for name, found in staged['paths'].items():
        inputs = found['inputs']
        eigenvalues = np.linalg.eigvalsh(inputs.T.astype(np.float64) @ inputs / len(inputs))  # of the Hessian
        summary |= {
            f'toy_{name}_condition_number': float(eigenvalues[-1] / eigenvalues[0]),
            f'toy_{name}_learning_rate': found['rate'],
            f'toy_{name}_steps_to_1_percent': found['by_rate'][found['rate']]['steps_to_1_percent'],
            f'toy_{name}_final_relative_excess_loss': found['by_rate'][found['rate']]['final'],
        }
    for name, rate in staged['mnist_rates'].items():
        kept = staged['mnist_runs'][f'mnist_{name}'].values()
        accuracies = [r['test']['accuracy'] for r in kept]
        summary |= {
            f'mnist_{name}_test_accuracy': results.mean_test(kept),
            f'mnist_{name}_test_accuracy_min': float(np.min(accuracies)),
            f'mnist_{name}_test_accuracy_max': float(np.max(accuracies)),
            f'mnist_{name}_learning_rate': rate,
            f'mnist_{name}_epoch_1_val_accuracy': results.mean_at(kept, 'val_accuracy', 0),
        }
    toy_by_rate = {name: found['by_rate'] for name, found in staged['paths'].items()}
    return experiment.Report(
        'Input standardization and SGD',
        summary,
        claims=verdicts(run.config, staged),
        sections=[
            report.prose(__doc__, 1, 2),
            describe(run.config, summary),
            by_rate_tables(run.config, toy_by_rate, run.runs),
        ],
        figures=[plot_paths(os.path.join(run.workdir, 'toy_paths.png'), run.config, staged['paths'])],
        records={'sweeps': run.runs, 'toy_by_rate': toy_by_rate},
        runs={**staged['toy_runs'], **staged['mnist_runs']},  # each input's chosen step size only
        curves=['val_accuracy', 'train_loss'],
    )


def verdicts(config, staged: dict) -> list[dict]:
    """The claims, each a paired difference over the seeds: the toy's steps to 1% (each input at its own fastest
    step size), and MNIST's early validation accuracy and late test accuracy (each at its chosen step size)."""
    steps = {name: staged['paths'][name]['steps_by_seed'] for name in TOY}
    runs, epoch_1 = staged['mnist_runs'], 'val_accuracy after epoch 1'
    final = results.mean_of_last('test_accuracy', config.final_epochs)
    last = f'test_accuracy, mean of the last {config.final_epochs} epochs'
    text = 'On an ill-conditioned least-squares problem, standardized inputs let SGD converge in fewer steps'
    text_faster = 'Standardized MNIST pixels train faster under plain SGD'
    text_better = '{} MNIST pixels end more accurate under plain SGD'
    first = results.after_epoch('val_accuracy', 1)
    return [
        results.claim(text, 'steps to 1% of the minimum', ['toy_raw', 'toy_standardize'], *steps.values()),
        results.compare(text_faster, runs, 'mnist_standardize', 'mnist_raw', epoch_1, first),
        results.compare(text_better.format('Standardized'), runs, 'mnist_standardize', 'mnist_raw', last, final),
        results.compare(text_better.format('PCA-whitened'), runs, 'mnist_pca_whiten', 'mnist_raw', last, final),
    ]


def describe(config, summary) -> str:
    """The setup and the tables: the toy's chosen step sizes and convergence, MNIST's chosen step sizes and
    accuracies."""
    toy = config.toy
    columns = ('condition_number', 'learning_rate', 'steps_to_1_percent', 'final_relative_excess_loss')
    rows = [[name, *(summary[f'toy_{name}_{column}'] for column in columns)] for name in TOY]
    columns = ('learning_rate', 'epoch_1_val_accuracy', 'test_accuracy', 'test_accuracy_min', 'test_accuracy_max')
    mnist = [[name, *(summary[f'mnist_{name}_{column}'] for column in columns)] for name in MNIST]
    widths = '-'.join(map(str, config.model.hidden_widths))
    return (
        f'Toy: {toy.num_train} training points, feature standard deviations {tuple(toy.feature_std)}, w* = '
        f'{tuple(toy.true_weights)}, noise σ = {toy.noise}; SGD with batch {toy.batch_size} for {toy.epochs} epochs '
        f'({toy.epochs * (toy.num_train // toy.batch_size)} steps) from w = 0, step sizes {tuple(toy.learning_rates)} '
        f'and seeds {list(config.seeds)} in one program. "Steps to 1%": from the first epoch end on which every '
        "seed's training loss stays within 1% of the way from its start to the least-squares minimum (-1: never); each "
        'input gets the step size that gets there in the fewest steps.\n\n'
        + report.markdown_table(
            ['toy inputs', 'condition number', 'chosen step size', 'steps to 1%', 'final excess (fraction)'], rows
        )
        + f'\n\nMNIST: 784-{widths}-10 ReLU (He init), plain SGD, batch {config.batch_size}, {config.epochs} epochs, '
        f'step sizes {tuple(config.learning_rates)} × seeds {list(config.seeds)} in one program per preprocessing, '
        f'the step size with the best mean final validation accuracy; whitening ε = {config.whitening_epsilon}.\n\n'
        + report.markdown_table(
            ['MNIST inputs', 'chosen step size', 'validation accuracy after epoch 1', 'test accuracy', 'min', 'max'],
            mnist,
        )
    )


def by_rate_tables(config, toy_by_rate: dict, sweeps: dict) -> str:
    """Every step size's outcome: the toy's steps to 1% and final excess, MNIST's accuracies (means over seeds)."""
    toy_rows = [
        [rate, *(toy_by_rate[name][rate][key] for name in TOY for key in ('steps_to_1_percent', 'final'))]
        for rate in config.toy.learning_rates
    ]
    mnist_rows = []
    for name, runs in sweeps.items():
        for rate in config.learning_rates:
            members = [run for run in runs.values() if run['hparams']['optimizer.learning_rate'] == rate]
            means = [
                results.mean_at(members, metric, row)
                for metric, row in (('val_accuracy', 0), ('train_loss', -1), ('val_accuracy', -1))
            ]
            mnist_rows.append([name.removeprefix('mnist_'), rate, *means])
    header = ['step size', *[f'{name} {column}' for name in TOY for column in ('steps to 1%', 'final excess')]]
    columns = ('validation accuracy after epoch 1', 'final training loss', 'final validation accuracy')
    return (
        '### Every step size\n\nToy (-1: not within 1% by the end, or diverged):\n\n'
        + report.markdown_table(header, toy_rows)
        + '\n\nMNIST (mean over seeds):\n\n'
        + report.markdown_table(['inputs', 'step size', *columns], mnist_rows)
    )


def plot_paths(path: str, config, paths: dict) -> str:
    """Each input's loss contours over the two weights (bias at its best) with the SGD paths of the chosen step
    size, one line per seed, a dot per epoch."""
    toy = config.toy
    _, y, _, _ = toy_problem(toy)
    with report.figure(path, 1, len(paths), figsize=(6 * len(paths), 5)) as (_, axes):
        for axis, (name, found) in zip(axes[0], paths.items()):
            inputs, solution, kernels = found['inputs'].astype(np.float64), found['solution'], found['kernels']
            # One scale on both axes, so that the contours' true shape shows.
            low, high = -0.3 * np.abs(solution[:2]).max(), 1.3 * np.abs(solution[:2]).max()
            w1, w2 = np.meshgrid(np.linspace(low, high, 200), np.linspace(low, high, 200))
            grid = np.stack([w1, w2], -1)
            centred = inputs - inputs.mean(0)
            losses = least_squares_loss(centred, y - y.mean(), grid, np.zeros(w1.shape))
            # The same levels in both panels: fractions of the way from the minimum to the loss at w = 0.
            lowest, start = losses.min(), least_squares_loss(centred, y - y.mean(), np.zeros(2), np.asarray(0.0))
            levels = lowest + (start - lowest) * np.array([0.003, 0.01, 0.03, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5])
            axis.contour(w1, w2, losses, levels=levels, cmap='Greys_r', linewidths=0.8)
            for seed in range(kernels.shape[1]):
                route = np.concatenate([np.zeros((1, 2)), kernels[:, seed]])
                axis.plot(route[:, 0], route[:, 1], '.-', markersize=3, label=f'seed {config.seeds[seed]}')
            axis.plot(*solution[:2], 'r*', markersize=12, label='least squares')
            axis.set_title(f'{name}: step size {found["rate"]:g}, {toy.epochs} epochs')
            axis.set_xlabel('w1' + (' (feature std 1)' if name == 'raw' else ''))
            axis.set_ylabel('w2' + (f' (feature std {toy.feature_std[1]:g})' if name == 'raw' else ''))
            axis.set_aspect('equal')
            axis.legend(fontsize=8)
    return path
