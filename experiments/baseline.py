"""Baseline: the Keras `mnist_mlp` example, 784-512(ReLU, dropout 0.2)-512(ReLU, dropout 0.2)-10 with RMSprop.

Keras reports 98.40% test accuracy after 20 epochs, trained on all 60,000 training images. We train on 50,000 and
watch the 10,000 held-out validation images, then (config.refit) train again on all 60,000 for the same number of
epochs, as Keras did, and report that run's test accuracy; the test split is touched only for final numbers.
`:quick` trains a small net for one epoch on a subset.
"""
from __future__ import annotations

import os

import ml_collections
import numpy as np

from nets import data as data_lib, report, runner

KERAS_TEST_ACCURACY = 0.9840


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full baseline, or with arg 'quick' a seconds-scale smoke version."""
    config = ml_collections.ConfigDict()
    config.dataset = 'mnist'
    config.validation_size = 10_000
    config.split_seed = 0
    config.train_limit = ml_collections.FieldReference(None, field_type=int)
    config.test_limit = ml_collections.FieldReference(None, field_type=int)
    config.seeds = (0, 1, 2)
    config.data_seed = 0
    config.shuffle = 'shared'
    config.model = dict(hidden_widths=(512, 512), activation='relu', kernel_init='glorot_uniform',
                        input_dropout=0.0, hidden_dropout=0.2, batch_norm=None)
    config.optimizer = 'rmsprop'
    config.learning_rate = 0.001
    config.batch_size = 128
    config.epochs = 20
    config.refit = True  # after the validation run, train on train + validation and report that test accuracy
    if arg == 'quick':
        config.train_limit, config.test_limit, config.validation_size = 2_000, 1_000, 1_000
        config.model.hidden_widths = (64,)
        config.seeds = (0,)
        config.epochs = 1
    elif arg not in (None, ''):
        raise ValueError(f"unknown baseline config argument {arg!r}; allowed: '' or 'quick'")
    return config


def run(config: ml_collections.ConfigDict, workdir: str, *, data_dir: str | None = None,
        cache_dir: str | None = None, resume: bool = False) -> dict:
    """Trains the baseline over its seeds, evaluates on test once, writes the report; returns the summary."""
    task, hparams = runner.mlp_task(config.model, config.optimizer, config.learning_rate, config.batch_size)
    splits = data_lib.load_splits(config.dataset, data_dir=data_dir, cache_dir=cache_dir,
                                  validation_size=config.validation_size, split_seed=config.split_seed,
                                  train_limit=config.train_limit, test_limit=config.test_limit)
    seeds = list(config.seeds)
    variants = {'baseline': splits}
    if config.refit:
        variants['refit'] = data_lib.load_splits(config.dataset, data_dir=data_dir, cache_dir=cache_dir,
                                                 validation_size=0, train_limit=config.train_limit and
                                                 config.train_limit + config.validation_size,
                                                 test_limit=config.test_limit)
    runs = {}
    for variant, variant_splits in variants.items():
        data, test = runner.device_data(variant_splits)
        _, runs[variant] = runner.train_members(
            task, seeds, [hparams] * len(seeds), data, test, epochs=config.epochs, label=variant,
            data_seed=config.data_seed, shuffle=config.shuffle, resume=resume,
            checkpoint_dir=runner.checkpoint_directory(workdir, variant))
    reported = 'refit' if config.refit else 'baseline'

    test_accuracy = [run['test']['accuracy'] for run in runs[reported].values()]
    histories = [run['history'] for run in runs['baseline'].values()]
    has_validation = 'val_accuracy' in histories[0][0]
    best_val = [max(row['val_accuracy'] for row in h) for h in histories] if has_validation else [float('nan')]
    summary = {'test_accuracy': float(np.mean(test_accuracy)), 'test_accuracy_min': float(np.min(test_accuracy)),
               'test_accuracy_max': float(np.max(test_accuracy)), 'best_val_accuracy': float(np.mean(best_val)),
               'epoch_seconds': report.steady_epoch_seconds(histories[0]),
               'compile_seconds': float(sum(row['compile_seconds'] for row in histories[0])),
               'examples_per_epoch': int(splits.train_images.shape[0] // config.batch_size * config.batch_size)}
    if config.refit:
        summary['test_accuracy_without_refit'] = float(np.mean([r['test']['accuracy']
                                                               for r in runs['baseline'].values()]))
    report.write_results(workdir, summary, config.to_dict(), seeds, runs)
    report.write_history_csv(workdir, runs)
    report.plot_curves(os.path.join(workdir, 'curves.png'), runs,
                       ('train_loss', 'val_loss', 'val_accuracy') if has_validation else ('train_loss',),
                       title='Keras mnist_mlp baseline')
    rows = [[variant, seed, run['test']['accuracy'],
             max((r.get('val_accuracy', float('nan')) for r in run['history'])), run['history'][-1]['train_loss']]
            for variant, by_seed in runs.items() for seed, run in by_seed.items()]
    report.write_report(workdir, 'Baseline: Keras mnist_mlp', [
        f'784-{"-".join(map(str, config.model.hidden_widths))}-10, {config.model.activation}, '
        f'dropout {config.model.hidden_dropout}, {config.optimizer} lr {config.learning_rate}, '
        f'batch {config.batch_size}, {config.epochs} epochs, seeds {seeds} (one vmapped program). '
        f'`baseline` trains on {splits.train_images.shape[0]} images and validates on '
        f'{splits.validation_images.shape[0]}' + ('; `refit` then trains on both, as Keras does, and gives the '
                                                  'reported test accuracy.' if config.refit else '.'),
        report.markdown_table(['metric', 'value'], [[k, v] for k, v in summary.items()]),
        f'Keras reports {KERAS_TEST_ACCURACY:.4f} test accuracy for this network; the mean over our seeds is '
        f'{summary["test_accuracy"]:.4f} ({"at least" if summary["test_accuracy"] >= KERAS_TEST_ACCURACY else "below"}'
        ' it).',
        report.markdown_table(['variant', 'seed', 'test accuracy', 'best val accuracy', 'final train loss'], rows),
        '![curves](curves.png)'])
    return summary
