"""Early stopping as pure state, with the semantics of Keras 3's `keras.callbacks.EarlyStopping`.

The state lives in the TrainState, so each member of a vmapped sweep stops on its own, a stopped member's weights
stay frozen, and a checkpoint carries the state (and the best weights) so that a resumed run stops where an
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp

from nets.registry import lookup

PREFIXES = ('train_', 'val_')
MODES = ('auto', 'min', 'max')


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Keras's arguments: stop after `patience` epochs without an improvement of at least `min_delta`.

    `monitor` is any metric the task reports, as train_<name> or val_<name> (the Task checks that it exists).
    """

    monitor: str = 'val_loss'
    min_delta: float = 0.0
    patience: int = 0
    mode: str = 'auto'
    baseline: float | None = None
    restore_best_weights: bool = False
    start_from_epoch: int = 0

    def __post_init__(self):
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(f'early-stopping monitor must be a metric name such as val_loss, got {self.monitor!r}')
        # Keras names training metrics without a prefix ('loss', 'accuracy'); the history calls them train_*.
        monitor = self.monitor if self.monitor.startswith(PREFIXES) else f'train_{self.monitor}'
        lookup(dict.fromkeys(MODES), self.mode, 'early-stopping mode')
        if self.patience < 0 or self.start_from_epoch < 0:
            raise ValueError('early-stopping patience and start_from_epoch must be >= 0')
        object.__setattr__(self, 'monitor', monitor)

    @property
    def maximize(self) -> bool:
        return self.mode == 'max' or (self.mode == 'auto' and self.monitor.endswith('accuracy'))


@flax.struct.dataclass
class EarlyStoppingState:
    """Per run: epochs seen, best value so far (valid once has_best), its epoch, epochs waited, and whether stopped."""

    epoch: jax.Array
    best: jax.Array
    has_best: jax.Array
    best_epoch: jax.Array
    wait: jax.Array
    stopped: jax.Array


def init() -> EarlyStoppingState:
    """The state before the first epoch (Keras's on_train_begin)."""
    return EarlyStoppingState(
        epoch=jnp.zeros((), jnp.int32),
        best=jnp.zeros((), jnp.float32),
        has_best=jnp.zeros((), bool),
        best_epoch=jnp.zeros((), jnp.int32),
        wait=jnp.zeros((), jnp.int32),
        stopped=jnp.zeros((), bool),
    )


def _is_improvement(rule: EarlyStopping, value: jax.Array, reference: jax.Array) -> jax.Array:
    delta = abs(rule.min_delta)
    return value - delta > reference if rule.maximize else value + delta < reference


def update(rule: EarlyStopping, state: EarlyStoppingState, value: jax.Array) -> tuple[EarlyStoppingState, jax.Array]:
    """Keras's on_epoch_end for one epoch's monitored `value`; returns the new state and whether it was the best.

    A stopped run's state does not change.
    """
    epoch = state.epoch
    counts = (epoch >= rule.start_from_epoch) & ~state.stopped
    wait = state.wait + 1
    improved = counts & (~state.has_best | _is_improvement(rule, value, state.best))
    beats_baseline = True if rule.baseline is None else _is_improvement(rule, value, jnp.float32(rule.baseline))
    wait = jnp.where(improved & beats_baseline, 0, wait)
    stop = counts & ~improved & (wait >= rule.patience) & (epoch > 0)
    new = EarlyStoppingState(
        epoch=jnp.where(state.stopped, epoch, epoch + 1),
        best=jnp.where(improved, value, state.best).astype(jnp.float32),
        has_best=state.has_best | improved,
        best_epoch=jnp.where(improved, epoch, state.best_epoch),
        wait=jnp.where(counts, wait, state.wait),
        stopped=state.stopped | stop,
    )
    return new, improved
