"""What the reference trainer trains: a 2-layer MLP (tanh hidden layer, softmax output) classifying a
seeded synthetic dataset labelled by a random "teacher" network, optimised with Adam.

Deterministic by construction: the dataset comes from ``seed`` alone, minibatches from a separate
``numpy.random.Generator`` whose state is checkpointed, and every operation is float64 on small arrays
(single-threaded BLAS paths), so the same state and RNG give the same next state bit for bit.

Adam (Kingma & Ba 2015), for each parameter θ with gradient g at step t (1-based):

    m ← β1·m + (1 − β1)·g        v ← β2·v + (1 − β2)·g²
    θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

PARAM_NAMES = ("w1", "b1", "w2", "b2")


@dataclass(frozen=True)
class ModelConfig:
    inputs: int = 16
    hidden: int = 32
    classes: int = 4
    samples: int = 2048
    batch: int = 64
    learning_rate: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


@dataclass
class TrainState:
    """Everything a resume needs: parameters, Adam moments, the step done and the sampler's RNG."""

    step: int
    arrays: dict[str, np.ndarray]  # w1 b1 w2 b2, m_<name>, v_<name>
    rng: np.random.Generator

    def digest(self) -> str:
        """sha256 over the step and every array (name, dtype, shape, bytes), in a fixed order."""
        h = hashlib.sha256(f"step={self.step};".encode())
        for name in sorted(self.arrays):
            a = np.ascontiguousarray(self.arrays[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def make_dataset(config: ModelConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ~ N(0, 1); labels = argmax of a random teacher MLP (so the task is learnable)."""
    rng = np.random.default_rng([seed, 1])
    x = rng.standard_normal((config.samples, config.inputs))
    teacher_hidden = np.tanh(x @ rng.standard_normal((config.inputs, config.hidden)))
    y = np.argmax(teacher_hidden @ rng.standard_normal((config.hidden, config.classes)), axis=1)
    return x, y


def initial_state(config: ModelConfig, seed: int) -> TrainState:
    rng = np.random.default_rng([seed, 2])
    params = {
        "w1": rng.standard_normal((config.inputs, config.hidden)) / np.sqrt(config.inputs),
        "b1": np.zeros(config.hidden),
        "w2": rng.standard_normal((config.hidden, config.classes)) / np.sqrt(config.hidden),
        "b2": np.zeros(config.classes),
    }
    arrays = dict(params)
    for name, value in params.items():
        arrays[f"m_{name}"] = np.zeros_like(value)
        arrays[f"v_{name}"] = np.zeros_like(value)
    return TrainState(step=0, arrays=arrays, rng=np.random.default_rng([seed, 3]))


def loss_and_gradients(
    arrays: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy of the batch and its gradients (backpropagation by hand)."""
    hidden = np.tanh(x @ arrays["w1"] + arrays["b1"])
    logits = hidden @ arrays["w2"] + arrays["b2"]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(-np.mean(np.log(probs[np.arange(n), y] + 1e-12)))
    d_logits = probs
    d_logits[np.arange(n), y] -= 1.0
    d_logits /= n
    d_hidden = (d_logits @ arrays["w2"].T) * (1.0 - hidden**2)
    grads = {"w2": hidden.T @ d_logits, "b2": d_logits.sum(axis=0), "w1": x.T @ d_hidden, "b1": d_hidden.sum(axis=0)}
    return loss, grads


def train_step(state: TrainState, config: ModelConfig, x: np.ndarray, y: np.ndarray) -> float:
    """One Adam step on a minibatch drawn from ``state.rng``; mutates ``state``; returns the batch loss."""
    batch = state.rng.choice(x.shape[0], size=config.batch, replace=False)
    loss, grads = loss_and_gradients(state.arrays, x[batch], y[batch])
    t = state.step + 1
    for name in PARAM_NAMES:
        g = grads[name]
        m = config.beta1 * state.arrays[f"m_{name}"] + (1 - config.beta1) * g
        v = config.beta2 * state.arrays[f"v_{name}"] + (1 - config.beta2) * g * g
        m_hat = m / (1 - config.beta1**t)
        v_hat = v / (1 - config.beta2**t)
        state.arrays[name] = state.arrays[name] - config.learning_rate * m_hat / (np.sqrt(v_hat) + config.epsilon)
        state.arrays[f"m_{name}"] = m
        state.arrays[f"v_{name}"] = v
    state.step = t
    return loss


def accuracy(arrays: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    hidden = np.tanh(x @ arrays["w1"] + arrays["b1"])
    return float(np.mean(np.argmax(hidden @ arrays["w2"] + arrays["b2"], axis=1) == y))
