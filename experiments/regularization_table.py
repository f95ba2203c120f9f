"""Srivastava et al. 2014, Table 9 on our core: 784-1024-1024-10 ReLU on all of MNIST with L2, L2 + L1, max-norm,
dropout + L2 and dropout + max-norm.

They report 1.62%, 1.60%, 1.35%, 1.25% and 1.05% test error (784-1024-1024-2048; 1.08% for dropout with 2×1024
units). One recipe for every variant: He init, Adam 1e-3 decayed ×0.8 an epoch, batch 128, trained on all 60,000
training images for 10 epochs, the dropout variants for twice as long (Srivastava et al.: a dropout net takes 2–3
times longer to train): a short schedule, so that every experiment's full run fits the time budget. Each
variant's strength (the L2 λ, the L1 strength added to the L2 variant's chosen λ, or the max-norm radius c) is
first chosen on validation, never on test: its candidates train as one vmapped program on 50,000 training images
for half the variant's epochs, and the candidate with the lowest validation error (mean over the last epochs and the
selection seeds) is kept. The table then trains the chosen strengths on all 60,000 images (each variant's seeds are
one vmapped program); its summary's test error is the final epoch's, mean over seeds, and the claims pair the
variants over the seeds in the published order by the test error averaged over the last config.final_epochs epochs.
The dropout rates (0.2 input, 0.5 hidden) are Srivastava et al.'s and are not swept. Since the dropout variants'
doubled length was set after a test result was seen (in an earlier, longer schedule), `l2_long` is its control: the
L2 variant at its chosen λ for the dropout variants' epochs. Three confirmation seeds, not the protocol's
ten for close pairs: ten would not fit the time budget. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from nets import experiment, masks, optimizers, regularizers, report, results, tasks, train, validation

CONFIG_RULES = {  # the fields only this experiment has; nets.validation checks the shared ones
    'dropout_epochs': validation.integer(1),
    'selection.fraction': validation.fraction,
    'learning_rate_decay': validation.fraction,
}
PUBLISHED_ERROR = {'l2': 0.0162, 'l2_l1': 0.0160, 'maxnorm': 0.0135, 'dropout_l2': 0.0125, 'dropout_maxnorm': 0.0105}
CONTROLS = {'l2_long': 'l2'}  # a control variant: the variant whose chosen strength it trains with
RADIUS = 'optimizer.transforms[0].max_norm'  # the max-norm variants' swept path


# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    'Seeds 0 and 1 developed the recipe. There every choice fell on an end of its grid (L2 3e-6, L1 1e-7, c = 2 and c'
    ' = 4): each grid went one step further there. A confirmation run on seeds 100-102 (2026-12-07) trained 40 epochs '
    '(80 with dropout) at x0.98 an epoch and took 3 h 59 min, past the time budget, and chose L2 1e-6, the bottom of '
    'its grid; its seeds count as development. The schedule was then cut to 10 epochs (20) at x0.8 an epoch, a choice '
    'made for the budget, not by any result. A development run of it on seeds 0-1 (2026-12-08; selection on seed 0, '
    'read on validation only) chose L2 1e-6, L1 1e-6 (the top of its grid, 2.09% validation error against 2.13% at '
    '3e-8), c = 2 (2 to 6 tie: the ball does not bind there) and dropout + L2 1e-6: the L2 and L1 grids now start at 0 '
    '(off, a closed end) and L1 reaches 1e-5. Its confirmation on seeds 200-202 (2026-12-08, 40 min 43 s) chose '
    'c = 1.5 for both max-norm variants, the bottom of that grid (0.0199 against 0.0200 validation error, and 0.0185 '
    'against 0.0187): c now reaches 0.75, and 6 (which tied 4 in every run: the ball does not bind there) is dropped. '
    'Seeds 200-202 count as development.'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full table, or with 'quick' a seconds-scale one."""
    # The table trains on all the training images (no validation split); the strengths are chosen on
    # config.selection's split.
    # Three confirmation seeds (ten would not fit the time budget); the development seeds are DEVELOPMENT's.
    config = experiment.base_config(
        seeds=(300, 301, 302), development_seeds=(0, 1, 100, 101, 102, 200, 201, 202), validation_size=0
    )
    config.checkpoint_every = 5
    config.final_epochs = 3  # the claims' test error: the mean over the last 3 epochs
    config.epochs = 10
    config.dropout_epochs = 20  # the dropout variants
    config.model = tasks.model_config(hidden_widths=(1024, 1024), activation='relu', kernel_init='he_normal')
    config.optimizer = tasks.optimizer_config('adam', 1e-3, schedule=None, transforms=())  # decay set in stages()
    config.learning_rate_decay = 0.8  # per epoch
    config.update(tasks.task_config())
    # Each variant's candidates, chosen on validation (see `selection`).
    # λ of λ·Σw² on every kernel (the L2 and dropout + L2 variants), and the L1 strength added to the L2 variant's
    # chosen λ: each grid starts at 0 (off), so it is closed below.
    config.l2 = (0.0, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5)
    config.l1 = (0.0, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5)
    config.max_norm = (0.75, 1.0, 1.5, 2.0, 3.0, 4.0)  # Srivastava et al.'s c (both max-norm variants)
    config.input_dropout, config.hidden_dropout = 0.2, 0.5
    config.selection = ml_collections.ConfigDict()
    config.selection.validation_size = 10_000  # held out from the training split while choosing
    config.selection.split_seed = 0
    config.selection.seeds = (300,)  # the strengths are chosen anew in the confirmation run
    config.selection.fraction = 0.5  # of each variant's epochs
    config.selection.window = 2  # the validation error is the mean of the last `window` epochs
    if experiment.is_quick(arg, 'regularization_table'):
        config.train_limit, config.test_limit, config.seeds = 1024, 500, (0,)
        config.development_seeds, config.selection.seeds, config.final_epochs = (), (0,), 1  # it confirms nothing
        config.epochs, config.dropout_epochs = 2, 3
        config.model.hidden_widths = (64, 64)
        config.l2, config.l1, config.max_norm = (1e-5, 1e-2), (1e-6,), (0.5, 3.0)
        config.selection.validation_size, config.selection.fraction, config.selection.window = 500, 1.0, 2
    return config


def variants(config, chosen: dict) -> dict[str, tuple[dict, str, tuple]]:
    """name -> (task config changes, the swept path, its candidates as a tuple). The changes hold the variant's
    chosen strength once `chosen` has it (else its first candidate), and 'epochs' where the variant trains for
    config.dropout_epochs; the L2 + L1 variant adds L1 to the L2 variant's chosen λ."""
    as_tuple = lambda values: values if isinstance(values, tuple) else (values,)
    l2s, l1s, radii = as_tuple(config.l2), as_tuple(config.l1), as_tuple(config.max_norm)
    l2 = lambda name: {'kernel_l2': chosen.get(name, l2s[0])}
    max_norm = lambda name: {'name': 'max_norm', 'max_norm': chosen.get(name, radii[0])}
    dropout = {**config.model.to_dict(), 'input_dropout': config.input_dropout, 'hidden_dropout': config.hidden_dropout}
    with_dropout = {'model': dropout, 'epochs': config.dropout_epochs}
    penalty, radius = 'penalties[0].kernel_l2', RADIUS
    with_l1 = {**l2('l2'), 'kernel_l1': chosen.get('l2_l1', l1s[0])}
    return {
        'l2': ({'penalties': (l2('l2'),)}, penalty, l2s),
        'l2_l1': ({'penalties': (with_l1,)}, 'penalties[0].kernel_l1', l1s),
        'maxnorm': ({'transforms': (max_norm('maxnorm'),)}, radius, radii),
        'dropout_l2': ({**with_dropout, 'penalties': (l2('dropout_l2'),)}, penalty, l2s),
        'dropout_maxnorm': ({**with_dropout, 'transforms': (max_norm('dropout_maxnorm'),)}, radius, radii),
        'l2_long': ({'penalties': (l2('l2'),), 'epochs': config.dropout_epochs}, penalty, l2s),
    }


def build(run, changes: dict, schedule: dict):
    """The variant's task and hyper-parameters (the config with its changes, the transforms in the optimizer) and
    its epochs."""
    optimizer = {**run.config.optimizer.to_dict(), 'schedule': schedule, 'transforms': changes.get('transforms', ())}
    return run.task({**changes, 'optimizer': optimizer}), changes.get('epochs', run.config.epochs)


def decay_schedule(config, train_examples: int) -> dict:
    """×learning_rate_decay once an epoch."""
    return {
        'name': 'exponential_decay',
        'transition_steps': train_examples // config.batch_size,
        'decay_rate': config.learning_rate_decay,
        'staircase': True,
    }


def validation_error(run: dict, window: int) -> float:
    """A member's validation error: 1 - its validation accuracy, mean over its last `window` epochs."""
    return float(1 - np.mean([row['val_accuracy'] for row in run['history'][-window:]]))


def saturation(state, runs: dict) -> dict[str, float]:
    """How much each max-norm member's constraint binds at the end of training: the fraction of its units whose
    incoming weights lie on the ball of its radius (the transform's kernels)."""
    kernels = masks.param_mask(optimizers.TRANSFORMS['max_norm'].fields['params'])
    return {
        label: float(
            regularizers.max_norm_saturation(train.member(state.params, index), run['hparams'][RADIUS], kernels)
        )
        for index, (label, run) in enumerate(runs.items())
    }


def by_candidate(runs: dict, path: str, candidates: tuple, values: dict[str, float]) -> dict:
    """{candidate: the mean of values[label] over the runs (the selection seeds) that trained with it}."""
    return {
        candidate: float(np.mean([values[label] for label, run in runs.items() if run['hparams'][path] == candidate]))
        for candidate in candidates
    }


def stages(run) -> dict:
    """Each variant's strength chosen on validation (test is never evaluated in these runs), then the table trained
    with it on all the training images; returns what summarize reads."""
    config, selection = run.config, run.config.selection
    data, _ = run.data(validation_size=selection.validation_size, split_seed=selection.split_seed)
    schedule = decay_schedule(config, len(data.train_labels))
    chosen, errors, saturations = {}, {}, {}
    for name in PUBLISHED_ERROR:
        changes, path, candidates = variants(config, chosen)[name]
        task, epochs = build(run, changes, schedule)
        state, runs = run.variant(
            f'select_{name}',
            task,
            seeds=selection.seeds,
            sweep={path: candidates},
            data=(data, None),
            epochs=max(1, round(epochs * selection.fraction)),
        )
        values = {label: validation_error(member, selection.window) for label, member in runs.items()}
        errors[name] = by_candidate(runs, path, candidates, values)
        if path == RADIUS:
            saturations[name] = by_candidate(runs, path, candidates, saturation(state, runs))
        chosen[name] = run.select(name, errors[name], metric='val_error', rule='min', note=path)
    staged = {'selection_train': len(data.train_labels)}

    data = run.data()
    schedule = decay_schedule(config, len(data[0].train_labels))
    for name, (changes, path, _) in variants(config, chosen).items():
        task, epochs = build(run, changes, schedule)
        # A sweep of the one chosen value records the strength in each run's hparams; test curves for the claims.
        sweep = {path: (chosen[CONTROLS.get(name, name)],)}
        run.variant(name, task, sweep=sweep, data=data, epochs=epochs, test_curve=True)
    return staged | {'chosen': chosen, 'errors': errors, 'saturations': saturations}


def summarize(run, staged: dict):
    """The table's test errors beside the published ones, the chosen strengths and how much max-norm binds."""
    config, chosen, saturations = run.config, staged['chosen'], staged['saturations']
    runs = {name: run.runs[name] for name in (*PUBLISHED_ERROR, *CONTROLS)}
    summary = {}
    for name in runs:
        summary[f'test_error_{name}'] = results.mean_test(runs[name], 'error')
        if name in saturations:
            summary[f'saturation_{name}'] = float(np.mean(list(saturation(run.states[name], runs[name]).values())))
    summary |= {f'chosen_{name}': value for name, value in chosen.items()}
    # The run's wall time is nets.experiment's, over every resumed segment: a stage's own time would be only the last
    # segment's (a resume restores the finished stages from their checkpoints).
    summary['wall_seconds'] = run.wall_seconds()
    test_errors = lambda name: [1 - member['test']['accuracy'] for member in runs[name].values()]
    rows = [
        [
            name,
            PUBLISHED_ERROR.get(name, ''),
            summary[f'test_error_{name}'],
            *(f(test_errors(name)) for f in (min, max)),
        ]
        for name in runs
    ]
    at_radius = lambda name, value: f' ({saturations[name][value]:.0%} at c)' if name in saturations else ''
    paths = {name: path for name, (_, path, _) in variants(config, chosen).items()}
    selection_rows = [
        [
            name,
            paths[name],
            f'{chosen[name]:g}',
            ', '.join(f'{value:g}: {error:.4f}{at_radius(name, value)}' for value, error in by_value.items()),
        ]
        for name, by_value in staged['errors'].items()
    ]
    by_name = lambda values: {
        name: {f'{value:g}': x for value, x in by_value.items()} for name, by_value in values.items()
    }
    order_ours = sorted(runs, key=lambda name: -summary[f'test_error_{name}'])
    bars = plot(os.path.join(run.workdir, 'test_error.png'), summary, runs)
    widths = '-'.join(map(str, config.model.hidden_widths))
    selection = config.selection
    return experiment.Report(
        'Regularization on all of MNIST (Srivastava et al. 2014, Table 9)',
        summary,
        sections=[
            report.prose(__doc__, 1, 2),
            f'784-{widths}-10, {config.epochs} epochs ({config.dropout_epochs} with dropout), seeds '
            f'{list(config.seeds)}; dropout {config.input_dropout} (input) and '
            f'{config.hidden_dropout} (hidden). Wall time {summary["wall_seconds"]:.0f} s over every resumed segment.',
            report.markdown_table(['variant', 'published error', 'our error (mean)', 'min', 'max'], rows),
            f'Our order, worst to best: {", ".join(order_ours)}; published: {", ".join(PUBLISHED_ERROR)}.',
            '## Strengths chosen on validation',
            f'{staged["selection_train"]} training and '
            f'{selection.validation_size} validation images (split seed {selection.split_seed}), '
            f"seeds {list(selection.seeds)}, {selection.fraction:.0%} of each variant's epochs; "
            f'the validation error is the mean of the last {selection.window} epochs. For the '
            'max-norm variants, "at c" is the share of units whose incoming weights end on the '
            "ball's surface, so how much the constraint binds (the table's own runs: "
            + ', '.join(f'{name} {summary[f"saturation_{name}"]:.0%}' for name in saturations)
            + ').',
            report.markdown_table(['variant', 'swept', 'chosen', 'validation error by candidate'], selection_rows),
        ],
        figures=[bars],
        claims=verdicts(config, runs),
        records={
            'sweeps': {name: run.runs[f'select_{name}'] for name in PUBLISHED_ERROR},
            'selection_errors': by_name(staged['errors']),
            'selection_saturation': by_name(saturations),
        },
        runs=runs,
        curves=['train_loss', 'train_accuracy'],
    )


def verdicts(config, runs: dict) -> list[dict]:
    """The claims, each a paired difference of test error (the mean over the last config.final_epochs epochs) over
    the seeds: each variant against the one before it in Table 9's order, dropout + L2 against its control at the
    same epochs, and dropout + max-norm against the 1.25% target."""
    error = lambda run: 1 - results.mean_of_last('test_accuracy', config.final_epochs)(run)
    metric = f'test error, mean of the last {config.final_epochs} epochs'
    published = lambda name: f'{PUBLISHED_ERROR[name]:.2%}'
    pair = lambda text, a, b: results.compare(text, runs, a, b, metric, error, expected='less')
    order = list(PUBLISHED_ERROR)
    claims = [
        pair(f'{b} beats {a}, as in Table 9 ({published(b)} against {published(a)})', b, a)
        for a, b in zip(order, order[1:])
    ]
    claims.append(
        pair(
            'Dropout + L2 beats L2 trained as long: the gain is dropout, not the doubled epochs',
            'dropout_l2',
            'l2_long',
        )
    )
    best = results.by_seed(runs['dropout_maxnorm'], error)
    claims.append(
        results.claim(
            'Dropout + max-norm reaches at most 1.25% test error',
            metric,
            ['dropout_maxnorm', '0.0125 (target)'],
            best,
            0.0125,
            expected='less',
        )
    )
    return claims


def plot(path: str, summary: dict, runs: dict) -> str:
    """Our test error beside the published one, per variant (seed min–max as error bars)."""
    names = list(runs)
    ours = np.array([summary[f'test_error_{name}'] for name in names])
    errors = [[1 - r['test']['accuracy'] for r in runs[name].values()] for name in names]
    spread = np.array([[m - min(e), max(e) - m] for m, e in zip(ours, errors)]).T
    positions = np.arange(len(names))
    with report.figure(path, figsize=(8, 3.6)) as (_, axes):
        axis = axes[0][0]
        axis.bar(positions - 0.2, [PUBLISHED_ERROR.get(name, 0) for name in names], 0.4, label='Srivastava et al. 2014')
        axis.bar(positions + 0.2, ours, 0.4, yerr=spread, capsize=3, label='ours (seed min–max)')
        axis.set_xticks(positions, names)
        axis.set_ylabel('test error')
        axis.legend()
        axis.grid(axis='y', alpha=0.3)
    return path
