"""Early stopping ≈ L2: the lecture's claim, checked on a linear model with squared error trained by gradient descent.

Gradient descent from w = 0 with step η, stopped after t steps, shrinks each eigen-direction of H = XᵀX/n by
1 - (1 - ηλ)^t; ridge regression with strength α shrinks it by λ/(λ + α). The two agree roughly when α = 1/(ηt)
(Goodfellow et al. 2016, §7.8). We train the linear model with the core (`fit`, full-batch and minibatch SGD, the
seeds of SGD as one vmapped program), record the weights after every epoch through the epoch hook, and compare the
trajectory with the exact ridge path, matched by that effective regularization. Each seed draws its own problem
(inputs, true weights, noise) and its own SGD batch order. The claims are of equivalence, their margins declared in
the config before the confirmation run: early stopping (the step of least validation loss) reaches the best ridge
strength's validation loss within config.loss_margin (relative), for gradient descent and for SGD, and its α = 1/(ηt)
matches ridge's best α within a factor config.alpha_factor. `:quick` is a seconds-scale run.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from nets import experiment, report, results, runner, tasks, train, validation

# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'condition': validation.positive,
    'features': validation.count,
    'gradient_descent_steps': validation.count,
    'ridge_grid': validation.grid,
    'loss_margin': validation.positive,
    'alpha_factor': validation.positive,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full comparison, or with 'quick' a seconds-scale one."""
    config = ml_collections.ConfigDict()
    config.features = 20
    config.num_train = 400
    config.num_validation = 2000
    config.condition = 100.0  # eigenvalues of the input covariance from 1 down to 1/condition
    config.noise = 2.0
    # Five confirmation seeds, each its own problem and SGD batch order; 0-2 developed the recipe (on problem 0).
    config.seeds, config.development_seeds = (100, 101, 102, 103, 104), (0, 1, 2)
    config.data_seed = 0
    # The claims' margins: "≈" as the lecture means it, declared before the confirmation run.
    config.loss_margin = 0.01  # best validation losses within 1% of each other
    config.alpha_factor = 2.0  # early stopping's α = 1/(ηt) within a factor 2 of ridge's best α
    # A linear model: no hidden layer, one output, weights starting at exactly zero (init_scale 0).
    config.model = tasks.model_config(hidden_widths=(), num_classes=1, init_scale=0.0)
    config.optimizer = tasks.optimizer_config('sgd', 0.1)  # gradient descent's η: ηλ ≤ 0.1, as the analysis assumes
    config.loss = 'half_squared_error'
    config.gradient_descent_steps = 5000  # ηt up to 500, where the smallest direction (λ = 0.01) converges
    config.sgd = dict(batch_size=20, learning_rate=0.02, epochs=1500)  # 20 steps an epoch: ηt up to 600
    config.ridge_grid = (1e-5, 10.0, 400)  # log-spaced strengths α for the exact ridge path
    if experiment.is_quick(arg, 'early_stopping_l2'):
        config.gradient_descent_steps, config.sgd.epochs, config.seeds = 500, 50, (0, 1)
        config.development_seeds = ()  # a smoke run: it confirms nothing
    return config


def linear_problem(config, seed: int) -> tuple[np.ndarray, ...]:
    """Seed `seed`'s problem: centred inputs with covariance eigenvalues from 1 to 1/condition in a random basis, and
    y = Xw* + noise."""
    rng = np.random.default_rng(seed)
    eigenvalues = np.logspace(0, -np.log10(config.condition), config.features)
    basis, _ = np.linalg.qr(rng.standard_normal((config.features, config.features)))
    total = config.num_train + config.num_validation
    x = (rng.standard_normal((total, config.features)) * np.sqrt(eigenvalues)) @ basis.T
    y = x @ rng.standard_normal(config.features) + config.noise * rng.standard_normal(total)
    x, y = x - x[: config.num_train].mean(0), y - y[: config.num_train].mean()  # no bias to fit
    split = config.num_train
    return x[:split].astype(np.float32), y[:split].astype(np.float32), x[split:].astype(np.float32), y[split:]


def ridge_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """argmin ½·mean((Xw - y)²) + ½·α·|w|² for each α, exactly: (H + αI)⁻¹ Xᵀy/n, in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    hessian, moment = x.T @ x / len(y), x.T @ y / len(y)
    return np.stack([np.linalg.solve(hessian + alpha * np.eye(len(moment)), moment) for alpha in alphas])


def trajectory(config, name: str, data: train.Data, batch_size: int, learning_rate: float, epochs: int, seed: int):
    """The weights after every epoch of a linear model trained by the core's fit, its batch order from `seed`."""
    task_config = {**config.to_dict(), 'batch_size': batch_size}
    task_config['optimizer'] = {**task_config['optimizer'], 'learning_rate': learning_rate}
    task, hparams = tasks.build(task_config, (config.features,))
    weights = []

    def record(epoch, state, history):
        weights.append(np.asarray(state.params['output']['kernel'])[0, :, 0])  # the one member's column

    every = max(1, epochs // 5)
    log = lambda line: report.log(line) if int(line.split('epoch')[1].split()[0]) % every == 0 else None
    _, runs = runner.train_variant(
        task,
        hparams,
        runner.grid((seed,)),
        data,
        None,
        epochs=epochs,
        name=name,
        data_seed=config.data_seed + seed,
        on_epoch_end=record,
        log=log,
    )
    return np.stack(weights)[:, None], runs  # [epochs, 1, features]


def compare(weights: np.ndarray, steps_per_epoch: int, learning_rate: float, x, y, alphas, path):
    """Per epoch and member: the relative distance to the ridge solution at α = 1/(η·t), and to the nearest point
    of the ridge path."""
    steps = steps_per_epoch * np.arange(1, len(weights) + 1)
    matched = ridge_path(x, y, 1.0 / (learning_rate * steps))
    distance = np.linalg.norm(weights - matched[:, None], axis=-1) / np.linalg.norm(matched, axis=-1)[:, None]
    to_path = np.linalg.norm(weights[:, :, None] - path[None, None], axis=-1)  # [epochs, members, alphas]
    nearest = to_path.min(-1) / np.linalg.norm(path[to_path.argmin(-1)], axis=-1)
    return steps, distance, nearest


def stages(run) -> dict:
    """Per seed, its problem, then the linear model trained on it by gradient descent and by SGD, recording the
    weights after every epoch."""
    config, staged = run.config, {}
    run.runs['gradient_descent'], run.runs['sgd'] = {}, {}
    for seed in config.seeds:
        x, y, x_validation, y_validation = problem = linear_problem(config, seed)
        data = train.Data(*jax.device_put((x, y, x_validation, y_validation.astype(np.float32))))
        # Not run.variant: each seed has its own problem, and thousands of epochs of synthetic data take seconds,
        # so the trajectories train without checkpoints and are re-run, not resumed.
        gd_weights, gd_runs = trajectory(
            config,
            'gradient_descent',
            data,
            config.num_train,
            config.optimizer.learning_rate,
            config.gradient_descent_steps,
            seed,
        )
        sgd_weights, sgd_runs = trajectory(
            config, 'sgd', data, config.sgd.batch_size, config.sgd.learning_rate, config.sgd.epochs, seed
        )
        run.runs['gradient_descent'] |= gd_runs
        run.runs['sgd'] |= sgd_runs
        staged[seed] = {'problem': problem, 'gd_weights': gd_weights, 'sgd_weights': sgd_weights}
    return staged


def measure(config, seed: int, found: dict, gd_validation: np.ndarray, sgd_validation: np.ndarray) -> dict:
    """One seed's trajectories against its exact ridge path: the distances (gradient descent and SGD), the stopping
    step of least validation loss and its α = 1/(ηt), and the best ridge strength's."""
    x, y, x_validation, y_validation = found['problem']
    alphas = np.logspace(np.log10(config.ridge_grid[0]), np.log10(config.ridge_grid[1]), int(config.ridge_grid[2]))
    path = ridge_path(x, y, alphas)
    validation_ridge = 0.5 * np.mean((x_validation @ path.T - y_validation[:, None]) ** 2, axis=0)
    gd = compare(found['gd_weights'], 1, config.optimizer.learning_rate, x, y, alphas, path)
    steps_per_epoch = config.num_train // config.sgd.batch_size
    sgd = compare(found['sgd_weights'], steps_per_epoch, config.sgd.learning_rate, x, y, alphas, path)
    best_step = int(np.argmin(gd_validation)) + 1
    return {
        'alphas': alphas,
        'path': path,
        'validation_ridge': validation_ridge,
        'gd': gd,
        'sgd': sgd,
        'max_relative_distance': float(gd[1].max()),
        'max_relative_distance_to_nearest_ridge': float(gd[2].max()),
        'sgd_max_relative_distance': float(sgd[1].max()),
        'sgd_max_relative_distance_to_nearest_ridge': float(sgd[2].max()),
        'early_stopping_best_step': best_step,
        'early_stopping_effective_alpha': 1.0 / (config.optimizer.learning_rate * best_step),
        'ridge_best_alpha': float(alphas[np.argmin(validation_ridge)]),
        'early_stopping_best_validation_loss': float(gd_validation.min()),
        'sgd_early_stopping_best_validation_loss': float(np.nanmin(sgd_validation)),
        'ridge_best_validation_loss': float(validation_ridge.min()),
    }


def summarize(run, staged: dict) -> experiment.Report:
    """Each seed's trajectories against its exact ridge path; the headlines are means over the seeds."""
    config = run.config
    curve = lambda name, seed: np.array([row['val_loss'] for row in run.runs[name][f'seed={seed}']['history']])
    measured = {
        seed: measure(config, seed, found, curve('gradient_descent', seed), curve('sgd', seed))
        for seed, found in staged.items()
    }
    keys = [key for key, value in next(iter(measured.values())).items() if isinstance(value, (int, float))]
    summary = {key: float(np.mean([values[key] for values in measured.values()])) for key in keys}
    first = config.seeds[0]
    png = os.path.join(run.workdir, 'trajectory.png')
    figure = plot(png, config, staged[first], measured[first], curve('gradient_descent', first))
    return experiment.Report(
        'Early stopping ≈ L2 on a linear model',
        summary,
        sections=[report.prose(__doc__, 1, 2), describe(config, summary)],
        figures=[figure],
        claims=verdicts(config, measured),
        records={'per_seed': {seed: {key: values[key] for key in keys} for seed, values in measured.items()}},
        curves=['train_loss', 'val_loss'],
    )


def verdicts(config, measured: dict) -> list[dict]:
    """The claims of equivalence, over the seeds' problems: each early-stopped path's best validation loss against
    the best ridge's (relative), and the stopping step's α = 1/(ηt) against ridge's best (log10 of their ratio)."""
    relative = lambda key: {
        seed: values[key] / values['ridge_best_validation_loss'] - 1 for seed, values in measured.items()
    }
    ratio = {
        seed: float(np.log10(values['early_stopping_effective_alpha'] / values['ridge_best_alpha']))
        for seed, values in measured.items()
    }
    loss = "best validation loss, relative to the best ridge strength's"
    within = lambda margin: dict(expected='within', margin=margin)
    return [
        results.claim(
            f'Gradient descent stopped early generalizes as well as the best L2 (within {config.loss_margin:.0%})',
            loss,
            ['gradient_descent', 'ridge (exact, best α on validation)'],
            relative('early_stopping_best_validation_loss'),
            0.0,
            **within(config.loss_margin),
        ),
        results.claim(
            f'SGD stopped early generalizes as well as the best L2 (within {config.loss_margin:.0%})',
            loss,
            ['sgd', 'ridge (exact, best α on validation)'],
            relative('sgd_early_stopping_best_validation_loss'),
            0.0,
            **within(config.loss_margin),
        ),
        results.claim(
            f'Stopping at step t acts as L2 with α = 1/(ηt): the best stop matches the best α within a factor '
            f'{config.alpha_factor:g}',
            'log10(α of the best stop / best ridge α)',
            ['gradient_descent', 'ridge (exact, best α on validation)'],
            ratio,
            0.0,
            **within(float(np.log10(config.alpha_factor))),
        ),
    ]


def describe(config, summary) -> str:
    """The setup and the headline distances, stopping step and strengths, in words."""
    return (
        f'{config.features} features, {config.num_train} training and {config.num_validation} validation examples, '
        f'covariance condition number {config.condition:g}, noise σ = {config.noise}. Gradient descent: η = '
        f'{config.optimizer.learning_rate}, {config.gradient_descent_steps} steps; SGD: batch {config.sgd.batch_size}, '
        f'η = {config.sgd.learning_rate}, {config.sgd.epochs} epochs; seeds {list(config.seeds)}, each its own '
        f'problem. Over the whole trajectory (means over the seeds), the weights after t steps are within '
        f'{summary["max_relative_distance"]:.1%} of the ridge solution at α = 1/(ηt) (relative L2 distance), and '
        f'within {summary["max_relative_distance_to_nearest_ridge"]:.1%} of the nearest point of the ridge path; '
        f'SGD {summary["sgd_max_relative_distance"]:.1%} and '
        f'{summary["sgd_max_relative_distance_to_nearest_ridge"]:.1%}. Chosen on validation, early '
        f'stopping stops at step {summary["early_stopping_best_step"]:.0f} (α = 1/(ηt) = '
        f'{summary["early_stopping_effective_alpha"]:.3g}); ridge picks α = {summary["ridge_best_alpha"]:.3g}; their '
        f'validation losses are {summary["early_stopping_best_validation_loss"]:.4f} and '
        f'{summary["ridge_best_validation_loss"]:.4f}.'
    )


def plot(path_png, config, found: dict, measured: dict, gd_validation: np.ndarray) -> str:
    """One seed's trajectories in the plane of H's largest and smallest eigen-directions, the distances, and the
    validation loss of both against the (effective) regularization."""
    x, gd_weights, path, gd, sgd = (
        found['problem'][0],
        found['gd_weights'],
        measured['path'],
        measured['gd'],
        measured['sgd'],
    )
    eigenvalues, vectors = np.linalg.eigh(x.T.astype(np.float64) @ x / len(x))
    plane = vectors[:, [-1, 0]]  # largest, smallest eigenvalue
    with report.figure(path_png, 1, 3, figsize=(15, 4)) as (_, axes):
        weights, distances, losses = axes[0]
        ridge_xy, gd_xy = path @ plane, gd_weights[:, 0] @ plane
        weights.plot(ridge_xy[:, 0], ridge_xy[:, 1], 'k-', label='ridge path (α from 10 to 1e-5)')
        weights.plot(gd_xy[:, 0], gd_xy[:, 1], 'C0.', markersize=3, label='gradient descent, one dot a step')
        weights.set(
            xlabel=f'w along the largest eigen-direction (λ = {eigenvalues[-1]:.2f})',
            ylabel=f'w along the smallest (λ = {eigenvalues[0]:.3f})',
            title=f'seed {config.seeds[0]}',
        )
        distances.semilogx(gd[0], gd[1][:, 0], label='GD vs ridge at α = 1/(ηt)')
        distances.semilogx(gd[0], gd[2][:, 0], label='GD vs nearest ridge point')
        distances.semilogx(sgd[0], sgd[1][:, 0], label='SGD vs ridge at α = 1/(ηt)')
        distances.set(xlabel='step t', ylabel='relative distance')
        losses.semilogx(measured['alphas'], measured['validation_ridge'], 'k-', label='ridge, α')
        stopped = 1.0 / (config.optimizer.learning_rate * gd[0])
        losses.semilogx(stopped, gd_validation, 'C0-', label='early stopping, 1/(ηt)')
        losses.set(xlabel='regularization α', ylabel='validation loss')
        for axis in axes[0]:
            axis.legend(fontsize=8)
            axis.grid(alpha=0.3)
    return path_png
