"""A small multilayer perceptron in NumPy, with its backpropagation written out.

The tour trains these networks with gradients of the loss with respect to the network's
output taken from fastloss; everything after that (through the layers to the weights) is
here. Layers are dense, initialised as Keras does (He-uniform for ReLU layers,
Glorot-uniform otherwise), and the optimiser is Keras's SGD with momentum.
"""

import numpy as np


def _activate(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z  # "linear"


def _backward(name, grad, out, pre):
    """d(loss)/d(pre-activation) from d(loss)/d(activation)."""
    if name == "relu":
        return grad * (pre > 0)
    if name == "tanh":
        return grad * (1.0 - out * out)
    if name == "sigmoid":
        return grad * out * (1.0 - out)
    if name == "softmax":  # the softmax Jacobian applied to grad, row by row
        return out * (grad - (grad * out).sum(axis=1, keepdims=True))
    return grad


class MLP:
    """Dense layers ``sizes[0] -> sizes[1] -> ...`` with one activation per layer."""

    def __init__(self, sizes, activations, rng):
        assert len(activations) == len(sizes) - 1
        self.activations = list(activations)
        self.weights, self.biases = [], []
        for fan_in, fan_out, act in zip(sizes[:-1], sizes[1:], activations):
            limit = np.sqrt(6.0 / fan_in) if act == "relu" else np.sqrt(6.0 / (fan_in + fan_out))
            self.weights.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)))
            self.biases.append(np.zeros(fan_out))
        self._cache = []

    @property
    def params(self):
        return self.weights + self.biases

    def forward(self, x):
        """The network's output for inputs ``x`` (rows); remembers what backward needs."""
        self._cache = []
        for w, b, act in zip(self.weights, self.biases, self.activations):
            pre = x @ w + b
            out = _activate(act, pre)
            self._cache.append((x, pre, out))
            x = out
        return x

    def backward(self, grad_out):
        """Given d(loss)/d(output) of the last forward pass: the gradients of the weights
        and biases (in the order of ``params``) and d(loss)/d(input)."""
        gw, gb = [None] * len(self.weights), [None] * len(self.biases)
        grad = grad_out
        for i in reversed(range(len(self.weights))):
            x, pre, out = self._cache[i]
            grad = _backward(self.activations[i], grad, out, pre)
            gw[i] = x.T @ grad
            gb[i] = grad.sum(axis=0)
            grad = grad @ self.weights[i].T
        return gw + gb, grad


class SGD:
    """Keras's SGD: velocity = momentum * velocity - lr * gradient; weight += velocity."""

    def __init__(self, params, lr=0.01, momentum=0.9):
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, grads):
        for p, v, g in zip(self.params, self.velocity, grads):
            v *= self.momentum
            v -= self.lr * g
            p += v


class Adam:
    """Adam (Kingma and Ba 2015), as generative models are usually trained."""

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for p, m, v, g in zip(self.params, self.m, self.v, grads):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
