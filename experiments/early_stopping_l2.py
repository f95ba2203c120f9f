"""Early stopping ≈ L2: the lecture's claim, checked on a linear model with squared error trained by gradient descent.

Gradient descent from w = 0 with step η, stopped after t steps, shrinks each eigen-direction of H = XᵀX/n by
1 - (1 - ηλ)^t; ridge regression with strength α shrinks it by λ/(λ + α). The two agree roughly when α = 1/(ηt)
(Goodfellow et al. 2016, §7.8). We train the linear model with the core (`fit`, full-batch and minibatch SGD, the
seeds of SGD as one vmapped program), record the weights after every epoch through the epoch hook, and compare the
trajectory with the exact ridge path, matched by that effective regularization. `:quick` is a seconds-scale run.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from nets import experiment, report, runner, tasks, train, validation

# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'condition': validation.positive,
    'features': validation.count,
    'gradient_descent_steps': validation.count,
    'ridge_grid': validation.grid,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full comparison, or with 'quick' a seconds-scale one."""
    config = ml_collections.ConfigDict()
    config.features = 20
    config.num_train = 400
    config.num_validation = 2000
    config.condition = 100.0  # eigenvalues of the input covariance from 1 down to 1/condition
    config.noise = 2.0
    config.problem_seed = 0
    config.seeds = (0, 1, 2)  # SGD's batch orders (gradient descent from w = 0 is deterministic)
    config.data_seed = 0
    # A linear model: no hidden layer, one output, weights starting at exactly zero (init_scale 0).
    config.model = tasks.model_config(hidden_widths=(), num_classes=1, init_scale=0.0)
    config.optimizer = tasks.optimizer_config('sgd', 0.1)  # gradient descent's η: ηλ ≤ 0.1, as the analysis assumes
    config.loss = 'half_squared_error'
    config.gradient_descent_steps = 5000  # ηt up to 500, where the smallest direction (λ = 0.01) converges
    config.sgd = dict(batch_size=20, learning_rate=0.02, epochs=1500)  # 20 steps an epoch: ηt up to 600
    config.ridge_grid = (1e-5, 10.0, 400)  # log-spaced strengths α for the exact ridge path
    if experiment.is_quick(arg, 'early_stopping_l2'):
        config.gradient_descent_steps, config.sgd.epochs, config.seeds = 500, 50, (0, 1)
    return config


def linear_problem(config) -> tuple[np.ndarray, ...]:
    """Centred inputs with covariance eigenvalues from 1 to 1/condition in a random basis, and y = Xw* + noise."""
    rng = np.random.default_rng(config.problem_seed)
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


def trajectory(config, name: str, data: train.Data, batch_size: int, learning_rate: float, epochs: int, shuffle: str):
    """The weights after every epoch of each member (seeds) of a linear model trained by the core's fit."""
    task_config = {**config.to_dict(), 'batch_size': batch_size}
    task_config['optimizer'] = {**task_config['optimizer'], 'learning_rate': learning_rate}
    task, hparams = tasks.build(task_config, (config.features,))
    seeds = config.seeds if shuffle == 'per_member' else (0,)
    weights = []

    def record(epoch, state, history):
        weights.append(np.asarray(state.params['output']['kernel'])[..., 0])

    every = max(1, epochs // 5)
    log = lambda line: report.log(line) if int(line.split('epoch')[1].split()[0]) % every == 0 else None
    _, runs = runner.train_variant(
        task,
        hparams,
        runner.grid(seeds),
        data,
        None,
        epochs=epochs,
        name=name,
        data_seed=config.data_seed,
        shuffle=shuffle,
        on_epoch_end=record,
        log=log,
    )
    weights = np.stack(weights)  # [epochs, (members,) features]
    return (weights if weights.ndim == 3 else weights[:, None]), runs


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
    """Trains the linear model by gradient descent and by SGD, recording the weights after every epoch."""
    config = run.config
    x, y, x_validation, y_validation = problem = linear_problem(config)
    data = train.Data(*jax.device_put((x, y, x_validation, y_validation.astype(np.float32))))
    # Not run.variant: each trajectory has its own batch order (shared, per member) and thousands of epochs of
    # synthetic data that take seconds, so it trains without checkpoints and is re-run, not resumed.
    gd_weights, run.runs['gradient_descent'] = trajectory(
        config,
        'gradient_descent',
        data,
        config.num_train,
        config.optimizer.learning_rate,
        config.gradient_descent_steps,
        'shared',
    )
    sgd_weights, run.runs['sgd'] = trajectory(
        config, 'sgd', data, config.sgd.batch_size, config.sgd.learning_rate, config.sgd.epochs, 'per_member'
    )
    return {'problem': problem, 'gd_weights': gd_weights, 'sgd_weights': sgd_weights}


def summarize(run, staged: dict) -> experiment.Report:
    """Both trajectories against the exact ridge path, and the validation-chosen stopping step against ridge's α."""
    config = run.config
    x, y, x_validation, y_validation = staged['problem']
    alphas = np.logspace(np.log10(config.ridge_grid[0]), np.log10(config.ridge_grid[1]), int(config.ridge_grid[2]))
    path = ridge_path(x, y, alphas)
    validation_ridge = 0.5 * np.mean((x_validation @ path.T - y_validation[:, None]) ** 2, axis=0)
    gd_weights = staged['gd_weights']
    gd = compare(gd_weights, 1, config.optimizer.learning_rate, x, y, alphas, path)
    steps_per_epoch = config.num_train // config.sgd.batch_size
    sgd = compare(staged['sgd_weights'], steps_per_epoch, config.sgd.learning_rate, x, y, alphas, path)
    gd_validation = np.array([row['val_loss'] for row in run.runs['gradient_descent']['seed=0']['history']])
    best_step = int(np.argmin(gd_validation)) + 1
    summary = {
        'max_relative_distance': float(gd[1].max()),
        'max_relative_distance_to_nearest_ridge': float(gd[2].max()),
        'sgd_max_relative_distance': float(sgd[1].max(0).mean()),
        'sgd_max_relative_distance_to_nearest_ridge': float(sgd[2].max(0).mean()),
        'early_stopping_best_step': best_step,
        'early_stopping_effective_alpha': 1.0 / (config.optimizer.learning_rate * best_step),
        'ridge_best_alpha': float(alphas[np.argmin(validation_ridge)]),
        'early_stopping_best_validation_loss': float(gd_validation.min()),
        'ridge_best_validation_loss': float(validation_ridge.min()),
    }
    png = os.path.join(run.workdir, 'trajectory.png')
    figure = plot(png, config, x, path, alphas, validation_ridge, gd, gd_weights, gd_validation, sgd)
    return experiment.Report(
        'Early stopping ≈ L2 on a linear model',
        summary,
        sections=[report.prose(__doc__, 1, 2), describe(config, summary)],
        figures=[figure],
        curves=['train_loss', 'val_loss'],
    )


def describe(config, summary) -> str:
    """The setup and the headline distances, stopping step and strengths, in words."""
    return (
        f'{config.features} features, {config.num_train} training and {config.num_validation} validation examples, '
        f'covariance condition number {config.condition:g}, noise σ = {config.noise}. Gradient descent: η = '
        f'{config.optimizer.learning_rate}, {config.gradient_descent_steps} steps; SGD: batch {config.sgd.batch_size}, '
        f'η = {config.sgd.learning_rate}, {config.sgd.epochs} epochs, seeds {list(config.seeds)} in one program. '
        f'Over the whole trajectory, the weights after t steps are within '
        f'{summary["max_relative_distance"]:.1%} of the ridge solution at α = 1/(ηt) (relative L2 distance), and '
        f'within {summary["max_relative_distance_to_nearest_ridge"]:.1%} of the nearest point of the ridge path; '
        f'SGD {summary["sgd_max_relative_distance"]:.1%} and '
        f'{summary["sgd_max_relative_distance_to_nearest_ridge"]:.1%} (mean over seeds). Chosen on validation, early '
        f'stopping stops at step {summary["early_stopping_best_step"]} (α = 1/(ηt) = '
        f'{summary["early_stopping_effective_alpha"]:.3g}); ridge picks α = {summary["ridge_best_alpha"]:.3g}; their '
        f'validation losses are {summary["early_stopping_best_validation_loss"]:.4f} and '
        f'{summary["ridge_best_validation_loss"]:.4f}.'
    )


def plot(path_png, config, x, path, alphas, validation_ridge, gd, gd_weights, gd_validation, sgd) -> str:
    """The two trajectories in the plane of H's largest and smallest eigen-directions, the distances, and the
    validation loss of both against the (effective) regularization."""
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
        )
        distances.semilogx(gd[0], gd[1][:, 0], label='GD vs ridge at α = 1/(ηt)')
        distances.semilogx(gd[0], gd[2][:, 0], label='GD vs nearest ridge point')
        distances.semilogx(sgd[0], sgd[1].mean(1), label='SGD vs ridge at α = 1/(ηt) (seed mean)')
        distances.set(xlabel='step t', ylabel='relative distance')
        losses.semilogx(alphas, validation_ridge, 'k-', label='ridge, α')
        stopped = 1.0 / (config.optimizer.learning_rate * gd[0])
        losses.semilogx(stopped, gd_validation, 'C0-', label='early stopping, 1/(ηt)')
        losses.set(xlabel='regularization α', ylabel='validation loss')
        for axis in axes[0]:
            axis.legend(fontsize=8)
            axis.grid(alpha=0.3)
    return path_png
