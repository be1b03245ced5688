"""Principal component analysis in float64 numpy: the linear baseline every autoencoder is
compared with (an autoencoder with a linear code and MSE spans the same subspace).

    pca = PCA(30).fit(x_train)              # x: (n, d) or (n, *shape), flattened
    z = pca.transform(x_test)               # (n, k) codes
    x_hat = pca.inverse_transform(z)        # (n, d)
    x_hat = pca.reconstruct(x_test)         # the same, in one step

The fit is exact (no randomization) whenever a d x d or n x n eigenproblem is small enough:
the covariance X^T X for tall data, the Gram matrix X X^T for wide data; both are
accumulated in float64. Only data both long and wide (min(n, d) > MAX_EXACT) falls back to
a randomized SVD (``torch.svd_lowrank``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aetk.checks import positive_int

# Largest d x d (or n x n) eigenproblem solved exactly.
MAX_EXACT = 4096
# Rows multiplied at once when accumulating X^T X.
CHUNK_ROWS = 8192


def _as_2d(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # numpy-only use
        pass
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("PCA needs a batch of examples, got a scalar")
    return x.reshape(x.shape[0], -1) if x.ndim != 2 else x


class PCA:
    """Fit / transform / inverse_transform, like scikit-learn's PCA (without whitening).

    Attributes after ``fit``: ``mean_`` (d,), ``components_`` (k, d) with orthonormal rows
    sorted by decreasing variance, ``explained_variance_`` (k,) (unbiased, n - 1),
    ``explained_variance_ratio_`` (k,), ``n_components_`` (k, capped at min(n, d)),
    ``n_samples_``, ``n_features_``.
    """

    def __init__(self, n_components: int):
        self.n_components = positive_int("PCA n_components", n_components, error=ValueError)
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    # -- fit ---------------------------------------------------------------------------
    def fit(self, x: Any) -> PCA:
        x = _as_2d(x)
        n, d = x.shape
        if n == 0:
            raise ValueError("PCA cannot be fitted on zero examples")
        k = min(self.n_components, n, d)
        mean = x.mean(axis=0, dtype=np.float64)
        if d <= MAX_EXACT and d <= n:
            comps, var = self._fit_covariance(x, mean, k)
        elif n <= MAX_EXACT:
            comps, var = self._fit_gram(x, mean, k)
        else:
            comps, var = self._fit_randomized(x, mean, k)
        total = float(((x - mean) ** 2).sum()) / max(n - 1, 1) if n * d <= 1e7 else \
            self._total_variance(x, mean)
        self.mean_, self.components_ = mean, comps
        self.explained_variance_ = var
        self.explained_variance_ratio_ = var / total if total > 0 else np.zeros_like(var)
        self.n_components_, self.n_samples_, self.n_features_ = k, n, d
        return self

    @staticmethod
    def _total_variance(x: np.ndarray, mean: np.ndarray) -> float:
        total = 0.0
        for s in range(0, x.shape[0], CHUNK_ROWS):
            total += float(((x[s:s + CHUNK_ROWS] - mean) ** 2).sum())
        return total / max(x.shape[0] - 1, 1)

    @staticmethod
    def _fit_covariance(x: np.ndarray, mean: np.ndarray, k: int):
        n, d = x.shape
        cov = np.zeros((d, d))
        for s in range(0, n, CHUNK_ROWS):
            c = x[s:s + CHUNK_ROWS].astype(np.float64) - mean
            cov += c.T @ c
        evals, evecs = np.linalg.eigh(cov)  # ascending
        order = np.argsort(evals)[::-1][:k]
        comps = evecs[:, order].T
        return _fix_signs(comps), np.maximum(evals[order], 0.0) / max(n - 1, 1)

    @staticmethod
    def _fit_gram(x: np.ndarray, mean: np.ndarray, k: int):
        n = x.shape[0]
        c = x.astype(np.float64) - mean
        gram = c @ c.T
        evals, evecs = np.linalg.eigh(gram)
        order = np.argsort(evals)[::-1][:k]
        evals, u = np.maximum(evals[order], 0.0), evecs[:, order]
        comps = u.T @ c  # rows: s_i v_i^T
        norms = np.linalg.norm(comps, axis=1, keepdims=True)
        comps = np.where(norms > 0, comps / np.where(norms > 0, norms, 1.0), 0.0)
        comps = _complete_orthonormal(comps)
        return _fix_signs(comps), evals / max(n - 1, 1)

    @staticmethod
    def _fit_randomized(x: np.ndarray, mean: np.ndarray, k: int):
        import torch

        n = x.shape[0]
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
            torch.manual_seed(0)
            _, s, v = torch.svd_lowrank(t, q=min(k + 10, min(t.shape)), niter=6,
                                        M=torch.from_numpy(mean).unsqueeze(0))
        comps = v[:, :k].T.numpy()
        return _fix_signs(comps), (s[:k].numpy() ** 2) / max(n - 1, 1)

    # -- use ---------------------------------------------------------------------------
    def _check(self) -> None:
        if self.components_ is None:
            raise RuntimeError("this PCA is not fitted yet; call fit(x) first")

    def transform(self, x: Any) -> np.ndarray:
        """(n, d) -> (n, k) codes."""
        self._check()
        x = _as_2d(x)
        if x.shape[1] != self.n_features_:
            raise ValueError(f"PCA was fitted on {self.n_features_} features, got {x.shape[1]}")
        return (x.astype(np.float64) - self.mean_) @ self.components_.T

    def inverse_transform(self, z: Any) -> np.ndarray:
        """(n, k) codes -> (n, d) reconstructions."""
        self._check()
        z = _as_2d(z).astype(np.float64)
        return z @ self.components_ + self.mean_

    def reconstruct(self, x: Any) -> np.ndarray:
        return self.inverse_transform(self.transform(x))


def _fix_signs(comps: np.ndarray) -> np.ndarray:
    """Deterministic signs: the largest-magnitude entry of each component is positive."""
    if comps.size == 0:
        return comps
    idx = np.argmax(np.abs(comps), axis=1)
    signs = np.sign(comps[np.arange(comps.shape[0]), idx])
    signs[signs == 0] = 1.0
    return comps * signs[:, None]


def _complete_orthonormal(comps: np.ndarray) -> np.ndarray:
    """Replace zero rows (null directions of rank-deficient data) by orthonormal fill-ins,
    so that ``components_`` always has orthonormal rows."""
    zero = np.where(~np.any(comps, axis=1))[0]
    if zero.size == 0:
        return comps
    k, d = comps.shape
    good = comps[np.any(comps, axis=1)]
    q, _ = np.linalg.qr(np.concatenate([good.T, np.eye(d)], axis=1))
    fill = q[:, good.shape[0]:good.shape[0] + zero.size].T
    out = comps.copy()
    out[zero] = fill
    return out


__all__ = ["PCA"]
