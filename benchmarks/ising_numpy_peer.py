"""A straightforward NumPy implementation of the kinetic-Ising mean-field equations and of the ML
inverse step: the peer that ``benchmarks/ising_forward.py`` measures neurocircuits against.

Same equations as :mod:`neurocircuits.ising.meanfield` (see its docstring), written the way a
NumPy user would: ``einsum``/matmul, Newton iterations over whole arrays until the residual is
below tolerance, Gauss–Hermite quadrature over pairs in row blocks. float32 unless the inputs
are float64.
"""

from __future__ import annotations

import numpy as np


def _newton(h, V, tol):
    """theta = h - V tanh(theta), plain vectorised Newton (as in the authors' code)."""
    th = h.copy()
    for _ in range(100):
        t = np.tanh(th)
        g = th - h + V * t
        if np.max(np.abs(g)) < tol:
            break
        th = th - g / (1 + V * (1 - t * t))
    return th


def _tol(x):
    return 1e-11 if x.dtype == np.float64 else 2e-6


def nmf(H, J, m_p, C_p, D_p):
    m = np.tanh(H + J @ m_p)
    return m, np.diag(1 - m**2), (1 - m**2)[:, None] * J * (1 - m_p**2)[None]


def tap(H, J, m_p, C_p, D_p):
    a_p = 1 - m_p**2
    m = np.tanh(_newton(H + J @ m_p, (J**2) @ a_p, _tol(J)))
    a = 1 - m**2
    C = a[:, None] * a[None] * ((J * a_p[None]) @ J.T)
    np.fill_diagonal(C, a)
    D = a[:, None] * J * a_p[None] * (1 + 2 * J * m[:, None] * m_p[None])
    return m, C, D


def plefka_t_o1(H, J, m_p, C_p, D_p):
    m = np.tanh(H + J @ m_p)
    return m, np.diag(1 - m**2), (1 - m**2)[:, None] * (J @ C_p)


def plefka_t_o2(H, J, m_p, C_p, D_p):
    JC = J @ C_p
    JCJ = JC @ J.T
    m = np.tanh(_newton(H + J @ m_p, np.diag(JCJ).copy(), _tol(J)))
    a = 1 - m**2
    C = a[:, None] * a[None] * JCJ
    np.fill_diagonal(C, a)
    D = a[:, None] * JC * (1 + 2 * J * m[:, None] * m_p[None])
    return m, C, D


def plefka_t1_o1(H, J, m_p, C_p, D_p, n_quad=16, rows=64):
    x, w = np.polynomial.hermite_e.hermegauss(n_quad)
    x, w = x.astype(J.dtype), (w / w.sum()).astype(J.dtype)
    a_p = 1 - m_p**2
    g = H + J @ m_p
    Delta = (J**2) @ a_p
    sd = np.sqrt(Delta)
    T1 = np.tanh(g[:, None] + sd[:, None] * x[None])
    m = T1 @ w
    a = (1 - T1**2) @ w
    D = a[:, None] * (J @ C_p)
    inv = np.where(sd > 0, 1 / np.where(sd > 0, sd, 1), 0)
    rho = np.clip(((J * a_p[None]) @ J.T) * inv[:, None] * inv[None], -1, 1)
    sh = np.sqrt(Delta / 2)
    n = len(H)
    EC = np.empty((n, n), J.dtype)
    w2 = (w[:, None] * w[None])[None]
    for r0 in range(0, n, rows):
        r = slice(r0, r0 + rows)
        u = np.sqrt(1 + rho[r])[..., None, None] * x[:, None]
        v = np.sqrt(1 - rho[r])[..., None, None] * x[None, :]
        ti = np.tanh(g[r, None, None, None] + sh[r, None, None, None] * (u + v))
        tk = np.tanh(g[None, :, None, None] + sh[None, :, None, None] * (u - v))
        EC[r] = np.sum(ti * tk * w2[None], axis=(2, 3))
    C = EC - np.outer(m, m)
    np.fill_diagonal(C, 1 - m**2)
    return m, C, D


def plefka2_t_o2(H, J, m_p, C_p, D_p):
    heff = H + J @ m_p
    JC = J @ C_p
    JCJ = JC @ J.T
    V = np.diag(JCJ).copy()
    V_il = V[:, None] - 2 * J * JC + J**2 * np.diag(C_p)[None]
    W_il = J @ D_p @ J.T - J * np.sum(J * D_p, axis=1)[None]
    Delta = J + W_il
    M = np.zeros_like(J)
    D = np.zeros_like(J)
    C = np.zeros_like(J)
    tol = _tol(J)
    for s in (-1.0, 1.0):
        p = (1 + s * m_p[None]) / 2
        t = np.tanh(_newton(heff[:, None] + Delta * (s - m_p[None]), V_il, tol))
        M += p * t
        D += p * s * t
        tc = np.tanh(_newton(heff[:, None] + JCJ * (s - m_p[None]), V[:, None] + 0 * JCJ, tol))
        C += tc * (s - m_p[None]) * p
    D -= M * m_p[None]
    m = M.mean(1)
    C = (C + C.T) / 2
    np.fill_diagonal(C, 1 - m**2)
    return m, C, D


METHODS = {"nmf": nmf, "tap": tap, "plefka_t_o1": plefka_t_o1, "plefka_t_o2": plefka_t_o2,
           "plefka_t1_o1": plefka_t1_o1, "plefka2_t_o2": plefka2_t_o2}


def ml_iteration(theta, X, Y, Minv):
    """One preconditioned (majorise-minimise) ascent step of the exact ML problem.

    ``theta = [H | J]`` (N, N+1); ``X``, ``Y`` float (S, N); ``Minv`` the inverse of the input
    second-moment matrix (N+1, N+1)."""
    h = theta[:, 0] + X @ theta[:, 1:].T
    r = Y - np.tanh(h)
    g = np.concatenate([r.sum(0)[:, None], r.T @ X], 1) / len(X)
    return theta + g @ Minv
