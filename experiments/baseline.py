"""Baseline: the Keras `mnist_mlp` example, 784-512(ReLU, dropout 0.2)-512(ReLU, dropout 0.2)-10 with RMSprop.

Keras reports 98.40% test accuracy after 20 epochs, trained on all 60,000 training images. We train on 50,000 and
watch the 10,000 held-out validation images, then (config.refit) train again on all 60,000 for the same number of
epochs, as Keras did, and report that run's test accuracy; the test split is touched only for final numbers.
`:quick` trains a small net for one epoch on a subset.
"""

from __future__ import annotations

import ml_collections

from nets import experiment, results, tasks, validation

KERAS_TEST_ACCURACY = 0.9840


# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'refit': validation.boolean,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full baseline, or with arg 'quick' a seconds-scale smoke version."""
    # Five confirmation seeds; 0, 1 and 2 were the seeds of every earlier run, the recipe's development.
    config = experiment.base_config(seeds=(100, 101, 102, 103, 104), development_seeds=(0, 1, 2))
    # The task (nets.tasks): model, optimizer, penalties, loss, early stopping, batch size.
    config.model = tasks.model_config(
        name='mlp',
        hidden_widths=(512, 512),
        activation='relu',
        kernel_init='glorot_uniform',
        input_dropout=0.0,
        hidden_dropout=0.2,
        batch_norm=None,
    )
    config.optimizer = tasks.optimizer_config('rmsprop', 0.001, transforms=())
    config.update(tasks.task_config())
    config.epochs = 20
    config.refit = True  # after the validation run, train on train + validation and report that test accuracy
    if experiment.is_quick(arg, 'baseline'):
        config.train_limit, config.test_limit, config.validation_size = 2_000, 1_000, 1_000
        config.model.hidden_widths = (64,)
        config.seeds, config.development_seeds = (0,), ()  # a smoke run: it confirms nothing
        config.epochs = 1
    return config


def stages(run) -> dict:
    """The baseline over its seeds, then (config.refit) the same on train + validation, as Keras trains."""
    config = run.config
    task = run.task()
    run.variant('baseline', task)
    if config.refit:  # on train + validation, as Keras trains
        limit = config.train_limit
        refit = run.data(validation_size=0, train_limit=limit and limit + config.validation_size)
        run.variant('refit', task, data=refit)
    return {}


def summarize(run, staged: dict) -> experiment.Report:
    """The test accuracy of the reported variant against Keras's, and the timings of the validation run."""
    config, runs = run.config, run.runs
    statistics = results.variant_statistics(runs)
    reported_variant = 'refit' if config.refit else 'baseline'
    reported = statistics[reported_variant]
    first = next(iter(runs['baseline'].values()))['history']
    examples = len(run.splits().train_labels) // config.batch_size * config.batch_size
    summary = {
        'test_accuracy': reported['test_accuracy']['mean'],
        'test_accuracy_min': reported['test_accuracy']['min'],
        'test_accuracy_max': reported['test_accuracy']['max'],
        'best_val_accuracy': statistics['baseline'].get('best_val_accuracy', {'mean': float('nan')})['mean'],
        'epoch_seconds': results.steady_epoch_seconds(first),
        'compile_seconds': float(sum(row['compile_seconds'] for row in first)),
        'examples_per_epoch': examples,
    }
    if config.refit:
        summary['test_accuracy_without_refit'] = statistics['baseline']['test_accuracy']['mean']
    widths = '-'.join(map(str, config.model.hidden_widths))
    refit = '; `refit` then trains on both, as Keras does, and gives the reported test accuracy' if config.refit else ''
    comparison = 'at least' if summary['test_accuracy'] >= KERAS_TEST_ACCURACY else 'below'
    description = (
        f'784-{widths}-10, {config.model.activation}, dropout {config.model.hidden_dropout}, '
        f'{config.optimizer.name} lr {config.optimizer.learning_rate}, batch {config.batch_size}, {config.epochs} '
        f'epochs, seeds {list(config.seeds)} (one vmapped program). `baseline` trains on {examples} '
        f'examples an epoch and validates on {config.validation_size}{refit}.'
    )
    keras = (
        f'Keras reports {KERAS_TEST_ACCURACY:.4f} test accuracy for this network; the mean over our seeds is '
        f'{summary["test_accuracy"]:.4f} ({comparison} it).'
    )
    claim = results.claim(
        f"Keras's mnist_mlp reaches {KERAS_TEST_ACCURACY:.2%} test accuracy; ours at least matches it",
        'test_accuracy',
        [reported_variant, 'Keras (published)'],
        results.by_seed(runs[reported_variant]),
        KERAS_TEST_ACCURACY,
    )
    return experiment.Report('Baseline: Keras mnist_mlp', summary, sections=[description, keras], claims=[claim])
