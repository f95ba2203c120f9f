"""Pruning LeNet-300-100 on MNIST: saliency criteria at equal sparsity against a fine-tuned dense control, the
lecture's prune–retrain–restore rule, iterative magnitude pruning and its lottery ticket, and neuron removal that
really shrinks the network.

The dense net (784-300-100-10, ReLU, Adam with a cosine decay to zero) takes its rate from a grid, chosen on
validation by the development seeds. Each criterion (the size |ΔL| of the exact loss change, OBD, first-order
Taylor, magnitude, random) prunes the kernels down a ladder of kept fractions, retraining between rungs, and a dense
control trains on for as many epochs; operating points and the best criterion are chosen on validation, and the test
error at every rung is a curve that chooses nothing. The rankings are compared with the signed ΔL and with |ΔL| on
more validation images. The lecture's rule prunes a step of what is left by |ΔL|, retrains, restores the group and
halves the step when the validation error rose by more than a tolerance, then retrains its final masks. Iterative
magnitude pruning with rewinding (Frankle & Carbin 2019: 20% of each layer a round, 10% of the output layer) gives
the ticket, trained beside its masks at fresh random weights. Neuron removal cuts the hidden layers by the exact
unit saliency, retraining between cuts, and times the smaller net. Claims pair the variants by seed (95% Student t
intervals). `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import jax
import matplotlib.ticker
import ml_collections
import numpy as np

from nets import experiment, masks, pruning, report, results, tasks, train, validation

RATE = 'optimizer.learning_rate'
PUBLISHED = (  # (kept fraction, test error, source)
    (1 / 12, 0.0159, 'Han et al. 2015'),
    (1 / 56, 0.0199, 'Dynamic Network Surgery'),
    (1 / 68, 0.0192, 'Sparse Variational Dropout'),
)
# The fields only this experiment has, each declared once: (default, rule). nets.validation checks the shared ones.
FRACTION, COUNT, POSITIVE, CRITERION = (
    validation.fraction,
    validation.count,
    validation.positive,
    validation.name_in(pruning.CRITERIA),
)
DEFAULTS, CONFIG_RULES = validation.declare(
    {
        'learning_rates': ((1e-3, 2e-3, 4e-3), validation.several(POSITIVE)),  # the dense net's grid
        'dense_error_bound': (0.018, FRACTION),  # the strong baseline: dense test error at most 1.8%
        # Of pruning.CRITERIA. The signed exact ΔL is compared in the rankings only: its ladder would cost 8 min more.
        'criteria': (('exact_size', 'obd', 'taylor', 'magnitude', 'random'), validation.several(CRITERION)),
        # Fractions of the kernel weights, and the rung where the claims compare criteria (about Han et al.'s 12×).
        'keep_levels': ((0.5, 0.3, 0.18, 0.12, 0.08, 0.05, 0.036, 0.027, 0.02), validation.several(FRACTION)),
        'compared_level': (0.12, FRACTION),
        'retrain_epochs': (1, COUNT),  # between two rungs
        'retrain_learning_rate': (5e-4, POSITIVE),
        # Validation images that saliencies are measured on. The exact criterion takes 160 s a member on 2,000 images
        # here, so only the rankings' comparison reads 2,000, on three members; the rule and the ladders read 256.
        'saliency_examples': (256, COUNT),
        'rank_examples': (2000, COUNT),
        'rank_members': (3, COUNT),
        'saliency_seed': (0, validation.seed),
        'obd_probes': (16, COUNT),
        # The lecture's rule: prune a step of what is left, retrain, restore if the validation error rose by more
        # than the tolerance over the dense net's; then retrain after the last round.
        'lecture_criterion': ('exact_size', CRITERION),
        'lecture_rounds': (10, COUNT),
        'lecture_step': (0.5, FRACTION),
        'lecture_tolerance': (0.002, validation.number(0.0)),
        'lecture_retrain_epochs': (3, validation.integer(0)),
        'imp_fraction': (0.2, FRACTION),  # IMP: 15 rounds of 2 epochs, 0.8^15 = 3.5% kept
        'imp_rounds': (15, COUNT),
        'imp_epochs': (2, COUNT),
        'margin': (0.002, POSITIVE),  # the equivalence claims' margin of test error, declared before the run
        'neuron_widths': (
            ((200, 80), (150, 60), (100, 50), (70, 40), (50, 30), (35, 20)),
            validation.several(validation.several(COUNT, distinct=False)),
        ),
        'timing_repeats': (20, COUNT),
    }
)


def _cuts_fit_the_trained_net(config) -> None:
    """Each cut gives one width per hidden layer, from 1 to that of the cut before (a cut only removes units)."""
    trained = previous = tuple(config['model']['hidden_widths'])
    for widths in config['neuron_widths']:
        if len(widths) != len(trained) or not all(1 <= w <= p for w, p in zip(widths, previous)):
            allowed = f'one width per hidden layer of the trained {trained}, from 1 to that of the cut before'
            validation.refuse('neuron_widths', widths, allowed + ' (cuts only remove units)')
        previous = tuple(widths)


def _rungs_and_samples_fit(config) -> None:
    """The ladder descends and the compared level is one of its rungs; the saliency batches fit the validation
    split, the ranked members the seeds."""
    levels = tuple(config['keep_levels'])
    if any(later >= earlier for earlier, later in zip(levels, levels[1:])):
        validation.refuse('keep_levels', levels, 'kept fractions that fall from rung to rung (a ladder only prunes)')
    if not any(np.isclose(config['compared_level'], level) for level in config['keep_levels']):
        validation.refuse('compared_level', config['compared_level'], f'one of keep_levels {config["keep_levels"]}')
    for field in ('saliency_examples', 'rank_examples'):
        if config[field] > config['validation_size']:
            validation.refuse(field, config[field], f'at most validation_size ({config["validation_size"]})')
    if config['rank_members'] > len(config['seeds']):
        validation.refuse('rank_members', config['rank_members'], f'at most the {len(config["seeds"])} seeds')


CONFIG_CHECKS = (_cuts_fit_the_trained_net, _rungs_and_samples_fit)


# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    'In development (seeds 0-2, 20 epochs) the dense rates 5e-4, 1e-3 and 2e-3 ended at 1.96%, 1.65% and 1.62% mean '
    'validation error; 2e-3 was the top of that grid, so the grid now reaches 4e-3 and drops 5e-4.'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Ten confirmation seeds (the ticket's comparison is close); 0-2 developed the recipe and choose the dense rate.
    config = experiment.base_config(seeds=tuple(range(100, 110)), development_seeds=(0, 1, 2), validation_size=5000)
    config.model = tasks.model_config(hidden_widths=(300, 100), activation='relu', kernel_init='glorot_uniform')
    config.optimizer = tasks.optimizer_config('adam', schedule=None, transforms=())  # the stages set rate and schedule
    config.update(tasks.task_config())
    config.epochs = 20  # the dense net's, a cosine decay to zero over them
    config.update(DEFAULTS)
    if experiment.is_quick(arg, 'pruning'):
        config.train_limit, config.test_limit, config.validation_size = 1024, 500, 300
        config.seeds, config.development_seeds, config.epochs = (0, 1), (2,), 2
        config.model.hidden_widths, config.learning_rates = (32, 16), (1e-3, 3e-3)
        config.keep_levels, config.compared_level = (0.5, 0.2, 0.1), 0.2
        config.saliency_examples, config.obd_probes, config.lecture_rounds = 64, 4, 2
        config.rank_examples, config.rank_members = 128, 2
        config.lecture_retrain_epochs, config.imp_rounds, config.imp_epochs = 1, 3, 1
        config.neuron_widths, config.timing_repeats = ((24, 12), (16, 8)), 2
    return config


def _errors(task, state, images, labels) -> np.ndarray:
    return 1 - np.asarray(train.evaluate_members(task, state, images, labels, members=True)['accuracy'])


def stages(run) -> dict:
    """The dense net's rate on the development seeds, the dense net and its fine-tuned control, every criterion's
    ladder, the lecture's rule, IMP and its ticket, and neuron removal; returns what summarize reads."""
    config = run.config
    data, test = run.data()
    batch = (data.validation_images[: config.saliency_examples], data.validation_labels[: config.saliency_examples])
    steps = len(data.train_labels) // config.batch_size * config.epochs
    adam = lambda rate, schedule: {**config.optimizer.to_dict(), 'learning_rate': rate, 'schedule': schedule}
    masked = lambda rate, schedule: run.task({'optimizer': adam(rate, schedule)}, after_update=masks.apply_masks)
    recipe = lambda rate: masked(rate, {'name': 'cosine_decay', 'decay_steps': steps})
    retrain = masked(config.retrain_learning_rate, {'name': 'constant'})
    retrain_task, staged = retrain[0], {}

    # The dense recipe, chosen on validation by the development seeds; pruning.start keeps the initial weights.
    sweep = {RATE: config.learning_rates}
    _, tuning = run.variant('tune_dense', recipe(config.learning_rates[0]), seeds=config.development_seeds, sweep=sweep)
    rate, _ = run.select_swept('dense learning rate', tuning, RATE, metric='val_accuracy')
    task = recipe(rate)
    dense, _ = run.variant('dense', task, prepare_state=pruning.start, test_curve=True)
    dense_val = _errors(task[0], dense, data.validation_images, data.validation_labels)
    ladder_epochs = len(config.keep_levels) * config.retrain_epochs
    run.variant('dense_finetuned', retrain, epochs=ladder_epochs, prepare_state=lambda s: pruning.start_from(dense, s))

    # Every criterion on the dense nets: the ladders' (and the lecture rule's) first scores, and the rankings
    # compared with the exact one on more images.
    key = jax.random.PRNGKey(config.saliency_seed)
    saliency = dict(images=batch[0], labels=batch[1], key=key, probes=config.obd_probes)
    named = dict.fromkeys((*config.criteria, config.lecture_criterion))
    scores = {c: pruning.member_saliency(c, task[0], dense, *batch, key, config.obd_probes) for c in named}
    ranked = train.stack([train.member(dense, i) for i in range(config.rank_members)])
    rank_batch = (data.validation_images[: config.rank_examples], data.validation_labels[: config.rank_examples])
    staged['rank_scores'] = pruning.rank_scores(task[0], ranked, *rank_batch, key, config.criteria, config.obd_probes)
    staged['first_order'] = pruning.first_order_change(task[0], ranked, *rank_batch)

    # The ladder of kept fractions, one variant a criterion; its test error per rung is a curve that chooses nothing.
    test_error = lambda state: {'test_error': _errors(retrain_task, state, *test).tolist()}
    ladders, levels = {}, config.keep_levels
    for c in config.criteria:
        rung = dict(epochs_per_rung=config.retrain_epochs, measure=test_error)
        hook = pruning.ladder_hook(retrain_task, c, levels, **rung, **saliency)
        start = lambda s, c=c: pruning.ladder_start(dense, s, scores[c], levels[0])
        _, runs = run.variant(f'prune_{c}', retrain, epochs=ladder_epochs, prepare_state=start, on_epoch_end=hook)
        ladders[c] = pruning.ladder_rungs(runs) | {'seeds': [member['seed'] for member in runs.values()]}

    # Operating points and the best criterion, on validation: the most compressed rung whose mean validation error
    # is at most the dense net's, then the lower mean validation error over the ladder.
    dense_error = float(dense_val.mean())
    points = {c: _operating_point(run, ladders[c], dense_error, c) for c in config.criteria}
    values = {c: (_compression(ladders[c], points[c]), -float(np.mean(ladders[c]['val']))) for c in config.criteria}
    note = '(compression at <= the dense validation error, minus the mean validation error)'
    best = run.select('criterion', values, metric='compression_within_val_error', note=note)
    staged |= {'ladders': ladders, 'points': points, 'best': best}

    # The lecture's rule by its criterion, then its final masks retrained.
    rule = dict(rounds=config.lecture_rounds, reference_error=dense_val, tolerance=config.lecture_tolerance)
    hook = pruning.lecture_hook(
        retrain_task, config.lecture_criterion, epochs_per_round=config.retrain_epochs, **rule, **saliency
    )
    start = lambda s: pruning.lecture_start(dense, s, scores[config.lecture_criterion], config.lecture_step)
    epochs = config.lecture_rounds * config.retrain_epochs + config.lecture_retrain_epochs
    staged['lecture'], _ = run.variant('lecture', retrain, epochs=epochs, prepare_state=start, on_epoch_end=hook)

    # Iterative magnitude pruning with rewinding; its last masks, at the initial weights and at fresh random ones
    # (seeds + 1000), train with the dense recipe.
    fractions = pruning.imp_fractions(dense.params, config.imp_fraction)
    rounds, epochs = config.imp_rounds, config.imp_epochs
    hook = pruning.imp_hook(task[0], fractions, rounds=rounds, epochs_per_round=epochs, measure=test_error)
    start = lambda s: pruning.imp_start(task[0], dense, s, fractions)
    imp, _ = run.variant('imp', task, epochs=rounds * epochs, on_epoch_end=hook, prepare_state=start)
    staged['ticket_kept_fraction'] = float(np.mean(pruning.kept_fraction(imp)))
    for name, seeds in (('ticket', config.seeds), ('ticket_random_init', [s + 1000 for s in config.seeds])):
        start = lambda s, fresh=name != 'ticket': pruning.ticket_start(task[0], dense, s, imp.masks, fresh)
        run.variant(name, task, seeds=seeds, prepare_state=start)

    # Neuron removal by the exact unit saliency, retraining between cuts; the cut is chosen on validation.
    cuts, epochs = config.neuron_widths, len(config.neuron_widths) * config.retrain_epochs
    hook = pruning.neuron_hook(
        retrain_task, cuts, epochs_per_cut=config.retrain_epochs, images=batch[0], labels=batch[1], measure=test_error
    )
    start = lambda s: pruning.neuron_start(retrain_task, dense, s, *batch, cuts[0])
    _, runs = run.variant('neurons', retrain, epochs=epochs, on_epoch_end=hook, prepare_state=start)
    widths = config.model.hidden_widths
    staged['neurons'] = pruning.neuron_cuts(runs, *task, widths, cuts, test[0], config.timing_repeats)
    bound = dense_error + config.lecture_tolerance
    within = {'dense': (True, -1)} | {
        _name(row['widths']): (row['val_error'] <= bound, cut) for cut, row in enumerate(staged['neurons'])
    }
    note = '(within the tolerance of the dense validation error, cut)'
    staged['structured'] = run.select('neuron widths', within, metric='cut_within_val_error', note=note)
    return staged


def _name(widths) -> str:
    return '-'.join(map(str, widths))


def _compression(ladder: dict, rung: int | None) -> float:
    return 1 / np.mean(ladder['kept'], 0)[rung] if rung is not None else 1.0


def _operating_point(run, rungs: dict, bound: float, criterion: str) -> int | None:
    """The index of the most compressed rung whose mean validation error is at most `bound` (None when none is),
    chosen on validation and recorded."""
    candidates = pruning.rung_compressions(rungs, bound)
    chosen = run.select(f'rung of {criterion} at dense_error', candidates, metric='compression_within_val_error')
    return None if chosen == 'none' else list(candidates).index(chosen) - 1


def verdicts(config, runs, staged) -> list[dict]:
    """The claims, paired by seed on the test error: the dense baseline's bound; each criterion at its operating
    point against the fine-tuned dense control; magnitude against random at the compared rung; the lecture rule's
    retrained net and the ticket against the dense net, and the ticket against its random init."""
    errors = lambda name: results.by_seed(runs[name], lambda run: 1 - run['test']['accuracy'])
    at = lambda c, rung: pruning.rung_errors(staged['ladders'][c], rung)
    margin, level, bound = config.margin, config.compared_level, config.dense_error_bound
    less = lambda text, variants, a, b: results.claim(text, 'test_error', variants, a, b, expected='less')
    within = lambda text, variants, a, b: results.claim(
        f'{text} (within ±{margin:g})', 'test_error', variants, a, b, expected='within', margin=margin
    )
    rung = [f'{k:.4f}' for k in config.keep_levels].index(f'{level:.4f}')
    dense, ticket = errors('dense'), errors('ticket')
    random_init = {seed - 1000: value for seed, value in errors('ticket_random_init').items()}
    pairs = [('magnitude', 'random')] if {'magnitude', 'random'} <= set(config.criteria) else []
    keeps = lambda c: f'{c} at its operating point keeps the fine-tuned dense error'
    lower = lambda a, b: f'at {level:g} kept, {a} prunes to a lower test error than {b}'
    return [
        less(f'the dense net tests at most {bound:.1%}', ['dense', 'issue 23'], dense, bound),
        *[
            within(keeps(c), [f'prune_{c}', 'dense_finetuned'], at(c, staged['points'][c]), errors('dense_finetuned'))
            for c in config.criteria
        ],
        *[less(lower(a, b), [f'prune_{a}', f'prune_{b}'], at(a, rung), at(b, rung)) for a, b in pairs],
        within("the lecture's rule, retrained, keeps the dense error", ['lecture', 'dense'], errors('lecture'), dense),
        within('the IMP ticket keeps the dense error', ['ticket', 'dense'], ticket, dense),
        less(
            'the ticket beats its masks at fresh random weights', ['ticket', 'ticket_random_init'], ticket, random_init
        ),
    ]


def summarize(run, staged: dict):
    """The headline numbers, claims, tables and figures."""
    config, runs, best, ladders, points = run.config, run.runs, staged['best'], staged['ladders'], staged['points']
    error = lambda name: results.mean_test(runs[name], 'error')
    summary = {'dense_test_error': error('dense'), 'dense_finetuned_test_error': error('dense_finetuned')}
    scores = staged['rank_scores']  # on rank_examples images, the first rank_members seeds
    spearman = pruning.rank_agreement(scores)
    summary |= {f'spearman_{c}': value for c, value in spearman.items()}
    # Against the size of the change |ΔL| too: the signed change is dominated by −g·w, whose sign is noise.
    summary |= {f'spearman_abs_{c}': value for c, value in pruning.rank_agreement(scores, np.abs).items()}
    first_order = {'exact': scores['exact'], 'first_order': staged['first_order']}
    summary['spearman_exact_first_order'] = pruning.rank_agreement(first_order)['first_order']
    summary['best_criterion'] = best
    for c in config.criteria:
        test_error = float(np.mean(ladders[c]['test'], 0)[points[c]]) if points[c] is not None else None
        summary |= {
            f'compression_at_dense_error_{c}': _compression(ladders[c], points[c]),
            f'test_error_at_dense_error_{c}': test_error,
        }
    summary['compression_at_dense_error'] = summary[f'compression_at_dense_error_{best}']
    summary['test_error_at_dense_error'] = summary[f'test_error_at_dense_error_{best}']
    summary['lecture_compression'] = float(np.mean(1 / pruning.kept_fraction(staged['lecture'])))
    summary['lecture_test_error'] = error('lecture')
    rows = [row for member in runs['lecture'].values() for row in member['history']]
    summary['lecture_restores'] = int(np.sum([row.get('restored', 0) for row in rows]))
    summary |= {'ticket_error': error('ticket'), 'ticket_random_init_error': error('ticket_random_init')}
    summary['ticket_kept_fraction'] = staged['ticket_kept_fraction']
    neurons, chosen = staged['neurons'], staged['structured']
    row = {'widths': config.model.hidden_widths, 'speedup': 1.0, 'test_error': summary['dense_test_error']}
    row = neurons[[_name(r['widths']) for r in neurons].index(chosen)] if chosen != 'dense' else row
    summary |= {'structured_speedup': row['speedup'], 'structured_widths': _name(row['widths'])}
    summary |= {'structured_test_error': row['test_error'], 'wall_seconds': run.wall_seconds()}
    path = lambda name: os.path.join(run.workdir, name)
    figures = [
        plot_error_vs_kept(path('error_vs_kept.png'), config, ladders, summary),
        plot_layer_kept(path('layer_kept.png'), ladders),
        plot_scatter(path('saliency_scatter.png'), scores, spearman),
    ]
    return experiment.Report(
        'Pruning LeNet-300-100: saliency, restore, lottery ticket and neuron removal',
        summary,
        sections=[report.prose(__doc__, 1, 2), describe(config, summary, ladders, neurons)],
        figures=figures,
        claims=verdicts(config, runs, staged),
        records={'ladders': ladders, 'neurons': neurons},
        curves=['train_loss', 'val_accuracy'],
    )


def describe(config, summary, ladders, neurons) -> str:
    """The recipe, the test error at every rung and the neuron cuts (the summary table has the other numbers)."""
    criteria = list(ladders)
    mean_test = lambda c, rung: f'{np.mean(ladders[c]["test"], 0)[rung]:.4f}'
    rung_rows = [
        [f'{level:.3f}', f'{1 / level:.1f}×'] + [mean_test(c, rung) for c in criteria]
        for rung, level in enumerate(config.keep_levels)
    ]
    neuron_rows = [
        [_name(r['widths']), r['weights'], f'{r["val_error"]:.4f}', f'{r["test_error"]:.4f}', f'{r["speedup"]:.2f}×']
        for r in neurons
    ]
    published = '; '.join(f'{source}: {error:.2%} at {1 / kept:.0f}×' for kept, error, source in PUBLISHED)
    return (
        f'784-{_name(config.model.hidden_widths)}-10 for {config.epochs} epochs (the rate chosen by seeds '
        f'{list(config.development_seeds)}), then {config.retrain_epochs} epoch(s) at {config.retrain_learning_rate} '
        f'between rungs; seeds {list(config.seeds)}; saliency on {config.saliency_examples} validation images (OBD: '
        f'the Gauss–Newton diagonal), rankings on {config.rank_examples} for {config.rank_members} seeds. The lecture '
        f'rule: {config.lecture_rounds} rounds by {config.lecture_criterion}, a step of {config.lecture_step} of what '
        f'is left, tolerance {config.lecture_tolerance}, then {config.lecture_retrain_epochs} epochs of retraining. '
        f'IMP: {config.imp_rounds} rounds of {config.imp_epochs} epoch(s). Published: {published}. '
        'The signed ΔL is dominated by its first-order term −g·w (spearman_exact_first_order), whose sign on '
        'held-out images is noise; the rankings are therefore also compared with its size |ΔL| (spearman_abs_*).\n\n'
        '## Test error at each rung (mean over seeds)\n\n'
        + report.markdown_table(['kept fraction', 'compression'] + [f'{c} test error' for c in criteria], rung_rows)
        + '\n\nOperating points and the best criterion are chosen on validation: the most compressed rung whose mean '
        "validation error is at most the dense net's, then its test error is read.\n\n## Neuron removal\n\n"
        + report.markdown_table(['widths', 'weights', 'val error', 'test error', 'inference speed-up'], neuron_rows)
        + f'\n\nChosen: the smallest within {config.lecture_tolerance} of the dense validation error; its speed-up '
        'is timed on the test set in one pass.'
    )


def _log_axes(axis, *axes: str) -> None:
    for name in axes:
        getattr(axis, f'{name}axis').set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.grid(alpha=0.3, which='both')


def plot_error_vs_kept(path, config, ladders, summary) -> str:
    """Test error against the kept fraction (log x), per criterion: seed mean with the min–max band."""
    with report.figure(path, figsize=(7, 4.5)) as (_, axes):
        axis = axes[0][0]
        for criterion, rungs in ladders.items():
            report.plot_band(axis, np.mean(rungs['kept'], 0), rungs['test'], criterion, marker='o')
        axis.axhline(summary['dense_test_error'], color='k', linestyle='--', label='dense')
        axis.axhline(0.019, color='gray', linestyle=':', label='1.9%')
        for kept, error, source in PUBLISHED:
            axis.scatter([kept], [error], marker='*', s=120, zorder=5, label=source)
        axis.set_xscale('log')
        axis.set_xticks(config.keep_levels, [f'{level:g}' for level in config.keep_levels], fontsize=7)
        axis.set(xlabel='fraction of kernel weights kept', ylabel='test error')
        top = max(np.mean(r['test'], 0).max() for r in ladders.values() if r is not ladders.get('random'))
        axis.set_ylim(0, min(0.06, max(0.03, top * 1.1)))
        _log_axes(axis, 'x')
        axis.legend(fontsize=7)
    return path


def plot_layer_kept(path, ladders) -> str:
    """The kept fraction of each layer against the overall one, per criterion."""
    with report.figure(path, 1, len(ladders), figsize=(3.2 * len(ladders), 3.2), sharey=True) as (_, axes):
        for axis, (criterion, rungs) in zip(axes[0], ladders.items()):
            for layer, values in rungs['layers'].items():
                axis.plot(np.mean(rungs['kept'], 0), np.mean(values, 0), marker='.', label=layer)
            axis.set(xscale='log', yscale='log', title=criterion, xlabel='kept overall')
            _log_axes(axis, 'x', 'y')
        axes[0][0].set_ylabel('kept in the layer')
        axes[0][0].legend(fontsize=7)
    return path


def plot_scatter(path, scores, spearman, samples: int = 20000) -> str:
    """Exact saliency against each approximate one (seed 0's dense net, a random sample of kernel weights)."""
    exact = masks.kernel_vector(scores['exact'], 0)
    pick = np.random.default_rng(0).choice(exact.size, min(samples, exact.size), replace=False)
    others = [c for c in scores if c != 'exact']
    with report.figure(path, 1, len(others), figsize=(3.4 * len(others), 3.3)) as (_, axes):
        for axis, criterion in zip(axes[0], others):
            axis.scatter(masks.kernel_vector(scores[criterion], 0)[pick], exact[pick], s=1, alpha=0.3)
            axis.set_xscale('symlog', linthresh=1e-8)
            axis.set_yscale('symlog', linthresh=1e-8)
            axis.xaxis.set_major_locator(matplotlib.ticker.SymmetricalLogLocator(base=100, linthresh=1e-8))
            axis.set(xlabel=criterion, title=f'ρ = {spearman[criterion]:.3f}')
            axis.grid(alpha=0.3)
        axes[0][0].set_ylabel('exact loss increase')
    return path
