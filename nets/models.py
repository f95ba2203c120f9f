"""Flax linen models by name: a configurable MLP (LeNet-300-100 is one of its configs) and an MLP autoencoder.

Every hyper-parameter that a sweep may vary (dropout rates, init scale, leaky slope) may be a traced jax scalar,
so that `jax.vmap` can train many differently configured copies of the same shapes in one program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nets.activations import get_activation
from nets.initializers import get_initializer
from nets.registry import lookup

BATCH_NORM_PLACEMENTS = ('before', 'after')  # of the activation; None: no batch norm


def _is_concrete_zero(value) -> bool:
    """True when `value` is a Python or NumPy number equal to 0 (never for tracers)."""
    return not isinstance(value, jax.core.Tracer) and float(value) == 0.0


def dropout(module: nn.Module, inputs: jax.Array, rate, train: bool) -> jax.Array:
    """Inverted dropout with the module's explicit 'dropout' rng; `rate` may be a traced scalar."""
    if not isinstance(rate, jax.core.Tracer) and not 0.0 <= float(rate) < 1.0:
        raise ValueError(f'dropout rate must be in [0, 1), got {rate}')
    if not train or _is_concrete_zero(rate):
        return inputs
    keep_probability = 1.0 - rate
    keep = jax.random.bernoulli(module.make_rng('dropout'), keep_probability, inputs.shape)
    return jnp.where(keep, inputs / keep_probability, jnp.zeros_like(inputs))


class MLP(nn.Module):
    """Fully connected classifier with per-layer activation, initializer, dropout and optional batch norm.

    Each hidden layer sows into the 'intermediates' collection its `preactivation_i` (what enters the activation
    function, after batch norm when batch norm is placed before it) and its `activation_i` (the layer's output
    before dropout), so regularizers and diagnostics read them without a second model.
    """

    hidden_widths: Sequence[int] = (512, 512)
    num_classes: int = 10
    activation: str = 'relu'
    negative_slope: float | jax.Array = 0.01
    kernel_init: str = 'glorot_uniform'
    init_std: float | None = None
    init_scale: float | jax.Array = 1.0
    input_dropout: float | jax.Array = 0.0
    hidden_dropout: float | jax.Array = 0.0
    batch_norm: str | None = None
    batch_norm_layers: Sequence[int] | None = None  # the hidden layers (0-based) that get batch norm; None: all
    # Keras defaults, so that numbers compare with the lecture's Keras experiments.
    batch_norm_momentum: float = 0.99
    batch_norm_epsilon: float = 1e-3
    # The learned scale γ and shift β after normalising; without them γ = 1 and β = 0 (the ablation of
    # experiments/batchnorm_affine).
    batch_norm_scale: bool = True
    batch_norm_shift: bool = True

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool) -> jax.Array:
        x = self.hidden_layers(inputs, train)
        return nn.Dense(
            self.num_classes, kernel_init=self._kernel_init(), bias_init=nn.initializers.zeros, name='output'
        )(x)

    def hidden_layers(self, inputs: jax.Array, train: bool) -> jax.Array:
        """Input dropout, then each hidden layer: dense_i, [batch_norm_i], activation, [batch_norm_i], dropout."""
        if self.batch_norm is not None:
            lookup(dict.fromkeys(BATCH_NORM_PLACEMENTS), self.batch_norm, 'batch_norm placement (or None)')
        outside = sorted(set(self.batch_norm_layers or ()) - set(range(len(self.hidden_widths))))
        if outside:
            raise ValueError(
                f'batch_norm_layers {tuple(self.batch_norm_layers)} names layer {outside[0]}, but the hidden layers '
                f'are 0..{len(self.hidden_widths) - 1}'
            )
        activation = get_activation(self.activation, self.negative_slope)
        kernel_init = self._kernel_init()
        x = inputs.reshape((inputs.shape[0], -1))
        x = dropout(self, x, self.input_dropout, train)
        for layer, width in enumerate(self.hidden_widths):
            if width < 1:
                raise ValueError(f'hidden widths must be positive integers, got {tuple(self.hidden_widths)}')
            z = nn.Dense(width, kernel_init=kernel_init, bias_init=nn.initializers.zeros, name=f'dense_{layer}')(x)
            normalized = self.batch_norm_layers is None or layer in self.batch_norm_layers
            if self.batch_norm == 'before' and normalized:
                z = self._batch_norm(layer, train)(z)
            self.sow('intermediates', f'preactivation_{layer}', z)
            a = activation(z)
            if self.batch_norm == 'after' and normalized:
                a = self._batch_norm(layer, train)(a)
            self.sow('intermediates', f'activation_{layer}', a)
            x = dropout(self, a, self.hidden_dropout, train)
        return x

    def _kernel_init(self):
        return get_initializer(self.kernel_init, std=self.init_std, scale=self.init_scale)

    def _batch_norm(self, layer: int, train: bool) -> nn.BatchNorm:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.batch_norm_momentum,
            epsilon=self.batch_norm_epsilon,
            use_scale=self.batch_norm_scale,
            use_bias=self.batch_norm_shift,
            name=f'batch_norm_{layer}',
        )


class Autoencoder(MLP):
    """An MLP encoder (the hidden layers of MLP, named as in MLP so that they transplant into a classifier) and a
    mirrored decoder back to the input's size. The output is linear: the image itself for an MSE loss, or its
    logits for binary cross-entropy. `num_classes` is unused. With `tied_weights`, decoder layer i uses the
    transpose of the mirrored encoder kernel and has only a bias of its own. `input_dropout` corrupts the input
    while the loss still compares with the clean image: a denoising autoencoder.
    """

    tied_weights: bool = False

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool) -> jax.Array:
        activation = get_activation(self.activation, self.negative_slope)
        x = self.hidden_layers(inputs, train)
        widths = tuple(self.hidden_widths)
        features = int(np.prod(inputs.shape[1:]))
        sizes = (*widths[-2::-1], features)
        for layer, width in enumerate(sizes):
            name = 'reconstruction' if layer == len(sizes) - 1 else f'decoder_{layer}'
            if self.tied_weights:
                kernel = self.variables['params'][f'dense_{len(widths) - 1 - layer}']['kernel']
                x = _TransposedDense(width, name=name)(x, kernel)
            else:
                x = nn.Dense(width, kernel_init=self._kernel_init(), bias_init=nn.initializers.zeros, name=name)(x)
            if layer < len(sizes) - 1:
                x = activation(x)
        return x


class _TransposedDense(nn.Module):
    """x @ kernel.T + bias: a decoder layer that shares an encoder layer's kernel and owns only its bias."""

    features: int

    @nn.compact
    def __call__(self, inputs: jax.Array, kernel: jax.Array) -> jax.Array:
        return inputs @ kernel.T + self.param('bias', nn.initializers.zeros, (self.features,))


def hidden_widths(params) -> tuple[int, ...]:
    """The hidden widths of an MLP or an Autoencoder's encoder, read from its params (of one member or stacked)."""
    widths = []
    while f'dense_{len(widths)}' in params:
        widths.append(int(params[f'dense_{len(widths)}']['kernel'].shape[-1]))
    return tuple(widths)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: its linen class, the fields a sweep may trace, how to read its shapes from params, and
    what its outputs are ('labels': class scores; 'inputs': a reconstruction), which the loss's targets must match."""

    module: type[nn.Module]
    sweepable: tuple[str, ...]
    architecture: Callable[[Any], dict[str, Any]]
    outputs: str = 'labels'


_MLP_SWEEPABLE = ('input_dropout', 'hidden_dropout', 'init_scale', 'negative_slope')
MODELS: dict[str, ModelSpec] = {
    'mlp': ModelSpec(MLP, _MLP_SWEEPABLE, lambda params: {'hidden_widths': hidden_widths(params)}),
    'autoencoder': ModelSpec(
        Autoencoder, _MLP_SWEEPABLE, lambda params: {'hidden_widths': hidden_widths(params)}, outputs='inputs'
    ),
}


def get_model(name: str) -> ModelSpec:
    """The model registered as `name`."""
    return lookup(MODELS, name, 'model')


def lenet_300_100(**overrides) -> MLP:
    """LeNet-300-100 (LeCun et al. 1998; the pruning papers' MNIST net): 784-300-100-10 with ReLU."""
    return MLP(**{'hidden_widths': (300, 100), 'activation': 'relu', **overrides})
