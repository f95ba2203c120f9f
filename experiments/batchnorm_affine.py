"""Batch norm's learned scale and shift: "γ and β are learned, for more freedom" (the lecture, after Ioffe & Szegedy
2015, who add them so that a normalized layer can still represent the identity).

Ioffe & Szegedy's MNIST net (784 → 3×100 sigmoid → 10, weights N(0, 0.1²), batch 60, plain SGD at a constant rate)
with BN before each sigmoid, four ways: γ and β learned (`learned`, the usual BN), both fixed at 1 and 0 (`fixed`:
every sigmoid then sees inputs of mean 0 and variance 1, where it is nearly linear), and each alone (`scale_only`,
`shift_only`). Each variant chooses its own rate from one grid (config.learning_rates, members of one vmapped
program with the seeds) on a 10,000-image validation split, by the mean over the seeds of the validation accuracy
averaged over the last config.final_epochs epochs. The claims pair each variant with `fixed` over the seeds at the
chosen rates: the test accuracy averaged over the last config.final_epochs epochs, and the final training loss
(the "freedom": how well the net can fit). The test set only draws curves. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import ml_collections

from nets import experiment, report, results, tasks

RATE = 'optimizer.learning_rate'
# variant -> (learned scale γ, learned shift β)
VARIANTS = {'learned': (True, True), 'scale_only': (True, False), 'shift_only': (False, True), 'fixed': (False, False)}
DESCRIBED = {'learned': 'Learning γ and β', 'scale_only': 'Learning γ alone', 'shift_only': 'Learning β alone'}

# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    "The recipe is (a) of experiments/batchnorm (Ioffe & Szegedy's net and initialization) at a constant rate, "
    'declared before any run. Seeds 0-2 were its development run (2026-12-07): on the grid 0.03-3 the learned and '
    'the shift-only nets chose 3.0, its top, so the grid now reaches 10 (and drops 0.03, which no variant chose).'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Five confirmation seeds; the development seeds are DEVELOPMENT's.
    config = experiment.base_config(seeds=(100, 101, 102, 103, 104), development_seeds=(0, 1, 2), checkpoint_every=5)
    config.epochs = 10  # 833 steps an epoch on 50,000 images
    config.final_epochs = 3  # the claims: the mean over the last 3 epochs
    config.model = tasks.model_config(
        hidden_widths=(100, 100, 100), activation='sigmoid', kernel_init='normal', init_std=0.1, batch_norm='before'
    )
    config.optimizer = tasks.optimizer_config('sgd', 0.1)  # the rate: learning_rates
    config.update(tasks.task_config(batch_size=60))
    config.learning_rates = (0.1, 0.3, 1.0, 3.0, 10.0)
    if experiment.is_quick(arg, 'batchnorm_affine'):
        experiment.smoke(config, learning_rates=(0.3, 1.0)).model.hidden_widths = (16, 16)
    return config


def stages(run) -> dict:
    """Every variant with the rates as members and the test accuracy after every epoch (a curve that chooses
    nothing); its rate chosen on validation. Returns the chosen rate's runs per variant."""
    model = lambda scale, shift: {**run.config.model.to_dict(), 'batch_norm_scale': scale, 'batch_norm_shift': shift}
    return {
        'chosen': {
            name: run.tuned_variant(name, {'model': model(*affine)}, RATE, run.config.learning_rates)
            for name, affine in VARIANTS.items()
        }
    }


def summarize(run, staged: dict) -> experiment.Report:
    """Each variant's chosen rate, final test accuracy and training loss; the claims against `fixed`."""
    config, chosen = run.config, staged['chosen']
    final = results.mean_of_last('test_accuracy', config.final_epochs)
    metric = f'test_accuracy, mean of the last {config.final_epochs} epochs'
    train_loss = results.mean_of_last('train_loss', 1)
    summary, rows = {}, []
    for name, members in chosen.items():
        rate = next(iter(members.values()))['hparams'][RATE]
        accuracy, loss = results.mean_of(members, final), results.mean_of(members, train_loss)
        summary |= {f'{name}_learning_rate': rate, f'{name}_accuracy': accuracy, f'{name}_train_loss': loss}
        rows.append([name, f'{rate:g}', accuracy, loss])
    claims = []
    for name, text in DESCRIBED.items():
        claims += [
            results.compare(
                f'{text} makes a BN net more accurate than fixing them at 1 and 0', chosen, name, 'fixed', metric, final
            ),
            results.compare(
                f'{text} lets a BN net fit its training set better than fixing them at 1 and 0',
                chosen,
                name,
                'fixed',
                'final train_loss',
                train_loss,
                expected='less',
            ),
        ]
    summary['wall_seconds'] = run.wall_seconds()  # over every resumed segment
    return experiment.Report(
        "Batch norm's learned scale and shift",
        summary,
        claims=claims,
        sections=[
            report.prose(__doc__, 1, 2),
            f'Seeds {list(config.seeds)}, {config.epochs} epochs; wall time {summary["wall_seconds"]:.0f} s.',
            report.markdown_table(['variant', 'rate (validation)', 'final test accuracy', 'final train loss'], rows),
        ],
        curves=['train_loss', 'val_accuracy', 'test_accuracy'],
    )
