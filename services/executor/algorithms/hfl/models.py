"""The models FedAvg trains, in numpy: logistic regression (binary or softmax) and a one-hidden-layer MLP.

Every model is a flat float64 parameter vector plus a ``ModelSpec`` that knows its layout, so
aggregation, masking and encryption see one 1-D array whatever the model. Training is plain
(mini-batch or full-batch) gradient descent on the mean cross-entropy; the same code trains
a party's local model and the centralised baseline of the correctness checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]

MODELS = ("logreg", "mlp")


@dataclass(frozen=True)
class ModelSpec:
    """Which model, for how many features and classes (``classes == 2`` and logreg: one sigmoid output)."""

    kind: str
    features: int
    classes: int
    hidden: int = 16

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.kind!r}")
        if self.features < 1 or self.classes < 2 or self.hidden < 1:
            raise ValueError("need at least 1 feature, 2 classes and 1 hidden unit")

    @property
    def outputs(self) -> int:
        return 1 if self.kind == "logreg" and self.classes == 2 else self.classes

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Named tensors in flat order; biases are the last row of each weight matrix."""
        if self.kind == "logreg":
            return {"w": (self.features + 1, self.outputs)}
        return {"w1": (self.features + 1, self.hidden), "w2": (self.hidden + 1, self.outputs)}

    @property
    def size(self) -> int:
        return sum(r * c for r, c in self.shapes().values())

    def init(self, seed: int) -> Vector:
        """Zeros for logistic regression (a convex problem); scaled normal weights for the MLP."""
        if self.kind == "logreg":
            return np.zeros(self.size)
        rng = np.random.default_rng([seed, 0x1F1])
        parts = [rng.normal(0.0, 1.0 / np.sqrt(r), size=(r, c)).reshape(-1) for r, c in self.shapes().values()]
        return np.concatenate(parts)

    def unflatten(self, flat: Vector) -> dict[str, Vector]:
        if flat.shape != (self.size,):
            raise ValueError(f"expected {self.size} parameters, got shape {flat.shape}")
        out, at = {}, 0
        for name, (r, c) in self.shapes().items():
            out[name] = flat[at : at + r * c].reshape(r, c)
            at += r * c
        return out

    def _logits(self, tensors: dict[str, Vector], x: Vector) -> tuple[Vector, Vector | None]:
        if self.kind == "logreg":
            return _affine(x, tensors["w"]), None
        hidden = np.tanh(_affine(x, tensors["w1"]))
        return _affine(hidden, tensors["w2"]), hidden

    def probabilities(self, flat: Vector, x: Vector) -> Vector:
        logits, _ = self._logits(self.unflatten(flat), x)
        if self.outputs == 1:
            return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)

    def predict(self, flat: Vector, x: Vector) -> npt.NDArray[np.int64]:
        p = self.probabilities(flat, x)
        return (p[:, 0] >= 0.5).astype(np.int64) if self.outputs == 1 else p.argmax(axis=1)

    def accuracy(self, flat: Vector, x: Vector, y: npt.NDArray[np.int64]) -> float:
        return float(np.mean(self.predict(flat, x) == y)) if len(y) else 0.0

    def loss_and_gradient(self, flat: Vector, x: Vector, y: npt.NDArray[np.int64]) -> tuple[float, Vector]:
        """Mean cross-entropy over the rows and its gradient with respect to the flat parameters."""
        tensors = self.unflatten(flat)
        p = self.probabilities(flat, x)
        target = y.reshape(-1, 1).astype(np.float64) if self.outputs == 1 else np.eye(self.classes)[y]
        eps = 1e-12
        if self.outputs == 1:
            loss = -np.mean(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps))
        else:
            loss = -np.mean(np.sum(target * np.log(p + eps), axis=1))
        delta = (p - target) / len(y)  # d loss / d logits, for sigmoid and softmax alike
        if self.kind == "logreg":
            return float(loss), (_with_bias(x).T @ delta).reshape(-1)
        _, hidden = self._logits(tensors, x)
        assert hidden is not None
        grad_w2 = _with_bias(hidden).T @ delta
        back = (delta @ tensors["w2"][:-1].T) * (1.0 - hidden**2)
        grad_w1 = _with_bias(x).T @ back
        return float(loss), np.concatenate([grad_w1.reshape(-1), grad_w2.reshape(-1)])

    def train(
        self,
        flat: Vector,
        x: Vector,
        y: npt.NDArray[np.int64],
        *,
        epochs: int,
        batch_size: int,
        learning_rate: float,
        rng: np.random.Generator,
    ) -> Vector:
        """``epochs`` passes of gradient descent; ``batch_size`` 0 (or >= rows) is full-batch, no shuffling."""
        w = flat.copy()
        rows = len(y)
        for _ in range(epochs):
            if batch_size <= 0 or batch_size >= rows:
                w -= learning_rate * self.loss_and_gradient(w, x, y)[1]
                continue
            order = rng.permutation(rows)
            for start in range(0, rows, batch_size):
                batch = order[start : start + batch_size]
                w -= learning_rate * self.loss_and_gradient(w, x[batch], y[batch])[1]
        return w


def _with_bias(x: Vector) -> Vector:
    return np.hstack([x, np.ones((len(x), 1))])


def _affine(x: Vector, w: Vector) -> Vector:
    return np.asarray(x @ w[:-1] + w[-1], dtype=np.float64)
