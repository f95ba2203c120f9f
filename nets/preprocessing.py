"""Input preprocessing as affine maps fitted on the training split: x -> (x - mean) @ linear.

`standardization` rescales each feature to mean 0 and variance 1; `pca_whitening` rotates onto the principal axes
and rescales each to variance λ/(λ + ε), nearly 1. Both are fitted on training inputs only and then applied, as
they are, to validation and test inputs, so that no statistic of a held-out split leaks into training.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from nets.registry import lookup


@flax.struct.dataclass
class Affine:
    """x -> (x - mean) * linear (a vector: per feature) or (x - mean) @ linear (a matrix)."""

    mean: jax.Array
    linear: jax.Array

    def __call__(self, inputs: jax.Array) -> jax.Array:
        centred = inputs.reshape(inputs.shape[0], -1) - self.mean
        return centred * self.linear if self.linear.ndim == 1 else centred @ self.linear


def identity(inputs: np.ndarray) -> Affine:
    """The map that changes nothing (raw inputs)."""
    features = int(np.prod(inputs.shape[1:]))
    return Affine(jnp.zeros(features, jnp.float32), jnp.ones(features, jnp.float32))


def standardization(inputs: np.ndarray, min_std: float = 1e-6) -> Affine:
    """Per-feature (x - mean) / std from `inputs`; a feature whose std is below `min_std` (a constant border
    pixel) is centred and left unscaled, so it stays exactly 0."""
    x = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
    mean, std = x.mean(0), x.std(0)
    scale = np.where(std > min_std, 1.0 / np.maximum(std, min_std), 1.0)
    return Affine(jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32))


def pca_whitening(inputs: np.ndarray, epsilon: float) -> Affine:
    """Projection on the principal axes of `inputs`' covariance, each divided by sqrt(λ + ε). ε > 0 keeps the
    near-constant directions (noise) from being blown up to unit variance."""
    x = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
    mean = x.mean(0)
    covariance = np.cov(x - mean, rowvar=False, bias=True)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]  # largest first, so that component i is the i-th principal axis
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 0.0), eigenvectors[:, order]
    matrix = eigenvectors / np.sqrt(eigenvalues + epsilon)
    return Affine(jnp.asarray(mean, jnp.float32), jnp.asarray(matrix, jnp.float32))


# name -> fit(training inputs, epsilon) -> Affine
PREPROCESSINGS = {
    'raw': lambda inputs, epsilon: identity(inputs),
    'standardize': lambda inputs, epsilon: standardization(inputs),
    'pca_whiten': pca_whitening,
}


def fit(name: str, inputs: np.ndarray, epsilon: float = 0.1) -> Affine:
    """The preprocessing `name` ('raw', 'standardize' or 'pca_whiten') fitted on `inputs` (the training split)."""
    return lookup(PREPROCESSINGS, name, 'preprocessing')(inputs, epsilon)
