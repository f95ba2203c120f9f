"""The order in which the examples are presented: reshuffled every epoch, one fixed shuffle, sorted by class,
hardest first, easiest first (a curriculum) and class-balanced batches.

One MLP (784 → 100 → 100 → 10 ReLU, He init, SGD with momentum, batch 128), the same for every order; the orders
are index permutations computed on the device inside each epoch's program (nets.orders), the loss-ordered ones from
every member's own per-example losses under its current weights. Each order's seeds are one vmapped program. The
test set only draws curves (curves.png: mean over seeds, min–max band). `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import time

import ml_collections
import numpy as np

from nets import data as data_lib, experiment, orders, report, runner, tasks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    config = ml_collections.ConfigDict()
    config.dataset = 'mnist'
    config.validation_size = 10_000
    config.train_limit = ml_collections.FieldReference(None, field_type=int)
    config.test_limit = ml_collections.FieldReference(None, field_type=int)
    config.seeds = (0, 1, 2)
    config.data_seed = 0
    config.checkpoint_every = 5
    config.epochs = 10
    config.model = tasks.model_config(hidden_widths=(100, 100), activation='relu', kernel_init='he_normal')
    config.optimizer = tasks.optimizer_config('momentum', 0.01, momentum=0.9)
    config.loss = 'softmax_cross_entropy'
    config.penalties = ()
    config.early_stopping = tasks.early_stopping_config()
    config.batch_size = 128
    config.orders = tuple(orders.ORDERS)
    if arg == 'quick':
        config.validation_size, config.train_limit, config.test_limit, config.seeds = 500, 1024, 500, (0, 1)
        config.model.hidden_widths, config.epochs = (32,), 2
    elif arg not in (None, ''):
        raise ValueError(f"unknown presentation_order config argument {arg!r}; allowed: '' or 'quick'")
    return config


def run(config, workdir: str, *, data_dir: str | None = None, cache_dir: str | None = None, resume: bool = False):
    """Trains every order; writes the report and figure; returns the summary."""
    started = time.perf_counter()
    splits = data_lib.load_splits(
        config.dataset,
        data_dir=data_dir,
        cache_dir=cache_dir,
        validation_size=config.validation_size,
        train_limit=config.train_limit,
        test_limit=config.test_limit,
    )
    data, test = runner.device_data(splits)
    runs, summary = {}, {}
    members = runner.grid(config.seeds)
    for name in config.orders:
        task, hparams = tasks.build({**config.to_dict(), 'order': name}, runner.input_shape(config.dataset))
        hook = runner.evaluation_hook(task, *test, members=len(members) > 1)
        _, runs[name] = runner.run_variant(
            workdir, config, name, task, hparams, members, data, test, resume=resume, on_epoch_end=hook
        )
        summary[f'accuracy_{name}'] = float(np.mean([run['test']['accuracy'] for run in runs[name].values()]))
    summary['wall_seconds'] = experiment.run_seconds(workdir, started)  # over every resumed segment
    rows = [
        [
            name,
            summary[f'accuracy_{name}'],
            min(r['test']['accuracy'] for r in runs[name].values()),
            max(r['test']['accuracy'] for r in runs[name].values()),
            float(np.mean([r['history'][0]['test_accuracy'] for r in runs[name].values()])),
        ]
        for name in runs
    ]
    report.write_run(
        workdir,
        'The order of presentation',
        summary=summary,
        config=config.to_dict(),
        runs=runs,
        curves=['train_loss', 'val_accuracy', 'test_accuracy'],
        sections=[
            report.prose(__doc__, 1, 2),
            f'Seeds {list(config.seeds)}, {config.epochs} epochs; wall time {summary["wall_seconds"]:.0f} s.',
            report.markdown_table(['order', 'final test accuracy (mean)', 'min', 'max', 'after epoch 1'], rows),
        ],
    )
    return summary
