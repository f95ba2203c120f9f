"""Input preprocessing: fitted on one split, applied unchanged to others; unit variance where it promises it."""

import numpy as np
import pytest

from nets import preprocessing


def correlated_inputs(seed: int, n: int = 4000) -> np.ndarray:
    """Five correlated features on very different scales, with nonzero means, and one constant feature."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((5, 5)) * np.array([0.01, 0.1, 1.0, 10.0, 100.0])
    x = rng.standard_normal((n, 5)) @ mixing + np.arange(5)
    return np.concatenate([x, np.full((n, 1), 0.5)], 1).astype(np.float32)


def test_standardization_gives_mean_0_and_variance_1_on_its_split_and_reuses_its_statistics_elsewhere():
    train_x, other_x = correlated_inputs(0), correlated_inputs(1)
    affine = preprocessing.fit('standardize', train_x)
    out = np.asarray(affine(train_x), np.float64)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out[:, :5].std(0), 1, rtol=1e-4)
    assert np.all(out[:, 5] == 0)  # a constant feature is centred, not divided by its zero spread
    # Another split is mapped with the training split's statistics, not its own.
    mean, std = train_x.astype(np.float64).mean(0), train_x.astype(np.float64).std(0)
    np.testing.assert_allclose(np.asarray(affine(other_x))[:, :5], (other_x - mean)[:, :5] / std[:5], rtol=1e-4,
                               atol=1e-4)  # fmt: skip
    assert not np.allclose(np.asarray(affine(other_x)).mean(0)[:5], 0, atol=1e-3)


def test_pca_whitening_decorrelates_to_variance_lambda_over_lambda_plus_epsilon():
    x = correlated_inputs(0)[:, :5]  # full rank
    covariance = np.cov(x.astype(np.float64), rowvar=False, bias=True)
    eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    for epsilon in (0.0, 1.0):
        out = np.asarray(preprocessing.fit('pca_whiten', x, epsilon)(x), np.float64)
        whitened = np.cov(out, rowvar=False, bias=True)
        # Components come largest first, uncorrelated, each with variance λ/(λ + ε): the identity when ε = 0.
        np.testing.assert_allclose(whitened, np.diag(eigenvalues / (eigenvalues + epsilon)), atol=2e-3)
    assert eigenvalues[0] / eigenvalues[-1] > 1e4  # the raw inputs were badly conditioned


def test_raw_is_the_identity_and_an_unknown_name_is_refused():
    x = correlated_inputs(0)
    np.testing.assert_array_equal(np.asarray(preprocessing.fit('raw', x)(x)), x)
    with pytest.raises(ValueError, match="unknown preprocessing 'zca'.*standardize"):
        preprocessing.fit('zca', x)
