"""The probe's solver: L2-regularised multinomial logistic regression (scikit-learn's objective) by SciPy's L-BFGS-B
on torch's matrix products, in the span of the rows when they are fewer than the features, and the temperature that
makes its probabilities mean what they say. `training.probe` chooses the strength and the folds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

SOLVE_DTYPE = torch.float32  # float64 took 2.8x as long on 2,000 photos for the same C and held-out accuracy
# The solver stops when a step lowers the loss by less than this fraction: the float32 loss's own resolution (machine
# epsilon). SciPy's default (2.2e-9, meant for float64) spent ~40% of the calls past it, on rounding noise. Measured on
# 120 protocol fits: C changed in as many fits as changing the order of the floating-point operations does.
FLOAT_STEP = float(np.finfo(np.float32).eps)


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z, mean, std): the features standardised as the probe solves on them (`SOLVE_DTYPE`), a (near-)constant
    feature's spread raised to a thousandth of the mean spread so that it is not blown up into a big weight."""
    x = x.to(SOLVE_DTYPE)
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = std.clamp(min=1e-3 * float(std.mean()) + 1e-12)
    return (x - mean) / std, mean, std


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising the cross-entropy of logits / T on held-out logits (temperature scaling), against labels
    smoothed by 1%: where every held-out image was right, T would otherwise shrink without end and the head claim
    certainty it cannot have from a few images (it stops near 99%). A search over 10^-4 ... 10^2 in steps of 10^0.05:
    strongly regularised probes give logits near zero, where a gradient method barely moves."""
    with torch.no_grad():
        candidates = torch.logspace(-4, 2, 121, dtype=logits.dtype)
        losses = [
            float(torch.nn.functional.cross_entropy(logits / t, labels, label_smoothing=0.01)) for t in candidates
        ]
    return float(candidates[int(np.argmin(losses))])


def row_space(z: torch.Tensor) -> torch.Tensor | None:
    """An orthonormal basis (D, r) of the rows' span, or None when the rows are more than half as many as the
    features. The L2-regularised solution lies in it (its gradient does), so solving in r <= N coordinates gives the
    same classifier at a fraction of the cost when N is well below D; nearer D, the SVD costs more than it saves
    (1,016 rows of 1,280 features: 0.5 s a fold for a solve ~20% faster; measured)."""
    if 2 * z.shape[0] > z.shape[1]:
        return None
    _, singular, vt = torch.linalg.svd(z, full_matrices=False)
    return vt[singular > singular[0] * 1e-10].T


def project(z: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """The rows in the basis' coordinates (as they are without one)."""
    return z.contiguous() if basis is None else z @ basis


def lift(w: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Weights solved in the basis' coordinates (stacked over the bias) back in the features'."""
    return w if basis is None else torch.cat([basis @ w[:-1], w[-1:]])


def start_in(start: torch.Tensor | None, basis: torch.Tensor | None, dim: int, classes: int) -> torch.Tensor | None:
    """A previous solution (standardised features + bias, classes) in a basis' coordinates, or None if it does not
    fit these features and classes."""
    if start is None or tuple(start.shape) != (dim + 1, classes):
        return None
    start = start.to(SOLVE_DTYPE)
    return start if basis is None else torch.cat([basis.T @ start[:-1], start[-1:]])


def predicted(path: list[torch.Tensor]) -> torch.Tensor | None:
    """Where to start the next C's solve: the last two solutions extended by one step (the grid is evenly spaced in
    log C). The minimum does not depend on it; the solver got there in a fifth fewer calls than from the last
    solution alone (measured on 2,000 photos)."""
    if len(path) < 2:
        return path[-1] if path else None
    return 2 * path[-1] - path[-2]


def affine(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return z @ w[:-1] + w[-1]


class Rows:
    """A block of rows laid out for the solver's two products: row-major and transposed."""

    def __init__(self, z: torch.Tensor, rows: slice):
        self.rows = rows
        self.z = z[rows].contiguous()
        self.zt = self.z.T.contiguous()

    def __call__(self, w: torch.Tensor, onehot: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
        """The rows' summed cross-entropy at W and its gradient (features and bias stacked)."""
        # (w.T @ z.T).T: the same product as z @ w, about four times as fast with z.T laid out row-major (measured)
        log_p = torch.log_softmax((w[:-1].T @ self.zt).T + w[-1], 1)
        loss = -float(log_p.gather(1, labels[self.rows, None]).sum())
        error = log_p.exp_().sub_(onehot[self.rows])  # d cross-entropy / d logits
        # (error.T @ z).T: the same product as z.T @ error, about twice as fast on a row-major z (measured)
        return loss, torch.cat([(error.T @ self.z).T, error.sum(0, keepdim=True)])


SPLIT_ROWS = 8192  # rows a thread at least: on 20,000 x 1,280 two threads took 35 ms a loss and gradient, one 55 ms


def row_blocks(z: torch.Tensor, threads: int) -> list[Rows]:
    """`z`'s rows in `threads` blocks (fewer where a block would have under SPLIT_ROWS rows), one a thread."""
    count = max(1, min(threads, len(z) // SPLIT_ROWS))
    bounds = np.linspace(0, len(z), count + 1).astype(int)
    return [Rows(z, slice(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]


def logistic(
    z: torch.Tensor,
    y: torch.Tensor,
    c: float,
    classes: int,
    init: torch.Tensor | None = None,
    tolerance: float = FLOAT_STEP,
    *,
    threads: int = 1,
    blocks: list[Rows] | None = None,
) -> torch.Tensor:
    """argmin_W C * sum_i CE(W z_i + b, y_i) + ||W||^2 / 2 (bias unpenalised; scikit-learn's objective, also for two
    classes); W stacked over b: (D + 1, classes). `blocks`: `z`'s rows as `row_blocks` lays them out (made here
    when not given, `threads` of them); with more than one, each loss and gradient is summed over them, a thread
    each (torch's products run outside the GIL)."""
    from scipy.optimize import minimize

    shape = (z.shape[1] + 1, classes)
    # two classes: scikit-learn fits one logit vector v (penalty |v|^2 / 2); softmax's two vectors are then +-v/2
    penalty = 1.0 if classes == 2 else 0.5
    blocks = blocks if blocks is not None else row_blocks(z, threads)
    onehot = torch.nn.functional.one_hot(y, classes).to(z.dtype)
    pool = ThreadPoolExecutor(len(blocks), thread_name_prefix="probe-rows") if len(blocks) > 1 else None

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:  # the objective / C: the same minimum,
        w = torch.from_numpy(flat.reshape(shape)).to(z.dtype)  # on a scale (summed cross-entropy) where the solver's
        if pool is None:  # relative stopping rule means the same for all C
            parts = [blocks[0](w, onehot, y)]
        else:
            parts = list(pool.map(lambda block: block(w, onehot, y), blocks))
        loss = penalty / c * float(w[:-1].square().sum()) + sum(part[0] for part in parts)
        gradient = parts[0][1]
        for part in parts[1:]:
            gradient += part[1]
        gradient[:-1] += 2 * penalty / c * w[:-1]
        return loss, gradient.double().numpy().ravel()

    start = np.zeros(shape) if init is None else init.double().numpy()
    # 10 corrections, not 20: an L-BFGS-B step costs SciPy ~0.9 ms with 20 at these sizes (a third of the probe's
    # time), ~0.5 ms with 10, for about as many function calls (measured on 2,000 photos)
    options = {"maxiter": 1000, "maxcor": 10, "gtol": 1e-9, "ftol": tolerance}
    try:
        found = minimize(loss_and_gradient, start.ravel(), jac=True, method="L-BFGS-B", options=options)
    finally:
        if pool is not None:
            pool.shutdown()
    return torch.from_numpy(found.x.reshape(shape)).to(z.dtype)


class Layout:
    """Rows of a design in the span of its rows (`row_space`; None: as they are), with rows to judge in the same
    coordinates, and their blocks per thread count: made once per set of rows."""

    def __init__(self, z: torch.Tensor, fit: np.ndarray, held: np.ndarray | None):
        every = len(fit) == len(z) and bool((fit == np.arange(len(z))).all())
        chosen = z if every else z[torch.from_numpy(fit)]  # the head's: every row, not copied
        self.basis = row_space(chosen)
        self.fit = project(chosen, self.basis)
        self.held = None if held is None else project(z[torch.from_numpy(held)], self.basis)
        self._blocks: dict[int, list[Rows]] = {}

    def blocks(self, threads: int) -> list[Rows]:
        if threads not in self._blocks:
            self._blocks[threads] = row_blocks(self.fit, threads)
        return self._blocks[threads]


class Design:
    """Features standardised for the solver, and the layouts of their rows the solves use (`Layout`), each made
    once: the studio's live model keeps one while its photos stay the same (a move changes labels, not features),
    so a refit does not standardise, copy and transpose 20,000 rows again."""

    LAYOUTS_KEPT = 16  # the folds' and the head's of the last two assignments

    def __init__(self, x: torch.Tensor):
        self.z, self.mean, self.std = standardise(x)
        self._layouts: OrderedDict[bytes, Layout] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.z)

    def layout(self, fit: np.ndarray, held: np.ndarray | None = None) -> Layout:
        """The layout of these rows, made on first use. The head's thread and the folds' ask at once: the table is
        read and changed under a lock, a layout made outside it."""
        key = fit.tobytes() + b"|" + (b"-" if held is None else held.tobytes())
        with self._lock:
            found = self._layouts.get(key)
            if found is not None:
                self._layouts.move_to_end(key)
                return found
        made = Layout(self.z, fit, held)
        with self._lock:
            self._layouts[key] = made
            while len(self._layouts) > self.LAYOUTS_KEPT:
                self._layouts.popitem(last=False)
        return made
