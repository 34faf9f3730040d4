"""The tour's experiments: the seed articles' Keras setups, in NumPy, on fastloss gradients.

Each supervised task trains one fresh network per loss (fixed seeds) with Keras's defaults
(mini-batches of 32, SGD with momentum) and records the train and validation loss after
every epoch, as the articles plot them. The loss and its gradient with respect to the
network's output come from one fastloss call.
"""

import time
from dataclasses import dataclass, field

import numpy as np

import fastloss as fl

from .mlp import MLP, SGD, Adam


@dataclass
class Run:
    """One loss trained on one task."""

    loss: str
    metric: str
    train_loss: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    train_metric: float = float("nan")
    test_metric: float = float("nan")
    seconds_per_epoch: float = float("nan")


@dataclass
class Setting:
    """A loss as a task uses it: the output activation and how targets are presented."""

    label: str
    name: str
    output: str
    options: dict = field(default_factory=dict)
    target: str = "raw"  # "raw", "column", "pm1" (labels in {-1, 1}), "onehot", "labels"


def _targets(setting, y, classes):
    if setting.target == "column":
        return y.reshape(-1, 1)
    if setting.target == "pm1":
        return (2.0 * y - 1.0).reshape(-1, 1)
    if setting.target == "onehot":
        return np.eye(classes)[y]
    if setting.target == "labels":
        return y.astype(np.intp)
    return y


def _loss(setting, out, t, want_grad=True):
    res = fl.compute(setting.name, out, t, grad=want_grad, **setting.options)
    return float(res.loss), res.grad


def train(setting, data, hidden, epochs, metric, rng, progress, lr=0.01):
    """Train a fresh network on ``data`` = (x_train, y_train, x_test, y_test, classes)."""
    x_tr, y_tr, x_te, y_te, classes = data
    t_tr, t_te = _targets(setting, y_tr, classes), _targets(setting, y_te, classes)
    width = 1 if classes <= 2 else classes
    net = MLP([x_tr.shape[1], hidden, width], ["relu", setting.output], rng)
    opt = SGD(net.params, lr=lr, momentum=0.9)
    run = Run(setting.label, metric)
    started = time.perf_counter()
    for _ in progress(range(epochs), desc=f"{setting.label:>22s}", leave=False, disable=None):
        order = rng.permutation(len(x_tr))
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            out = net.forward(x_tr[idx])
            _, grad = _loss(setting, out, t_tr[idx])
            grads, _ = net.backward(grad)
            opt.step(grads)
        run.train_loss.append(_loss(setting, net.forward(x_tr), t_tr, False)[0])
        run.test_loss.append(_loss(setting, net.forward(x_te), t_te, False)[0])
    run.seconds_per_epoch = (time.perf_counter() - started) / max(epochs, 1)
    run.train_metric = _score(metric, setting, net.forward(x_tr), y_tr)
    run.test_metric = _score(metric, setting, net.forward(x_te), y_te)
    return run


def _score(metric, setting, out, y):
    if metric == "MSE":
        return float(np.mean((out[:, 0] - y) ** 2))
    if out.shape[1] > 1:
        return float(np.mean(out.argmax(axis=1) == y))
    threshold = {"sigmoid": 0.5, "tanh": 0.0, "linear": 0.0}[setting.output]
    return float(np.mean((out[:, 0] > threshold) == (y == 1)))


# --- the three supervised tasks of the articles ----------------------------------------

REGRESSION = [
    Setting("mean squared error", "mean_squared_error", "linear", target="column"),
    Setting("mean squared log error", "mean_squared_logarithmic_error", "linear", target="column"),
    Setting("mean absolute error", "mean_absolute_error", "linear", target="column"),
    Setting("Huber", "huber", "linear", target="column"),
    Setting("pseudo-Huber", "pseudo_huber", "linear", target="column"),
    Setting("log-cosh", "log_cosh", "linear", target="column"),
]
CIRCLES = [
    Setting("binary cross-entropy", "binary_cross_entropy", "sigmoid", target="column"),
    Setting("hinge", "hinge", "tanh", target="pm1"),
    Setting("squared hinge", "squared_hinge", "tanh", target="pm1"),
    Setting("sigmoid focal", "sigmoid_focal_loss", "linear", target="column"),
]
BLOBS = [
    Setting("categorical CE", "categorical_cross_entropy", "softmax", target="onehot"),
    Setting("sparse softmax CE", "sparse_softmax_cross_entropy", "linear", target="labels"),
    Setting("KL divergence", "kl_divergence", "softmax", target="onehot"),
    Setting("softmax focal", "softmax_focal_loss", "linear", target="labels"),
]


def regression_data(n, rng_seed=1):
    """make_regression as in the article: 20 features, standardised, half for training."""
    from sklearn.datasets import make_regression
    from sklearn.preprocessing import StandardScaler

    x, y = make_regression(n_samples=n, n_features=20, noise=0.1, random_state=rng_seed)
    x = StandardScaler().fit_transform(x)
    y = StandardScaler().fit_transform(y.reshape(-1, 1))[:, 0]
    half = n // 2
    return x[:half], y[:half], x[half:], y[half:], 1


def circles_data(n, rng_seed=1):
    """make_circles as in the article: two noisy circles, half for training."""
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n, noise=0.1, random_state=rng_seed)
    half = n // 2
    return x[:half], y[:half], x[half:], y[half:], 2


def blobs_data(n, rng_seed=2):
    """make_blobs as in the article: three classes in 2-D; the first 10% for training."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=3, n_features=2, cluster_std=2, random_state=rng_seed)
    cut = n // 10
    return x[:cut], y[:cut], x[cut:], y[cut:], 3


# --- model-specific losses -------------------------------------------------------------

def triplet_embedding(steps, rng, progress):
    """Embed scikit-learn's 8x8 digits in 2-D with the triplet loss; 1-NN accuracy of the
    embedding on held-out digits, before and after training."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    x_tr, y_tr, x_te, y_te = x[:1200], y[:1200], x[1200:], y[1200:]
    net = MLP([64, 64, 2], ["relu", "linear"], rng)
    before = _one_nn(net.forward(x_tr), y_tr, net.forward(x_te), y_te)
    opt = SGD(net.params, lr=0.01, momentum=0.9)
    by_class = [np.flatnonzero(y_tr == c) for c in range(10)]
    losses = []
    for _ in progress(range(steps), desc=f"{'triplet embedding':>22s}", leave=False, disable=None):
        a = rng.integers(0, len(x_tr), 64)
        p = np.array([rng.choice(by_class[c]) for c in y_tr[a]])
        n = np.array([rng.choice(by_class[(c + rng.integers(1, 10)) % 10]) for c in y_tr[a]])
        batch = np.concatenate([x_tr[a], x_tr[p], x_tr[n]])
        emb = net.forward(batch)
        k = len(a)
        loss, (ga, gp, gn) = fl.triplet_margin_loss(emb[:k], emb[k:2 * k], emb[2 * k:], margin=1.0)
        grads, _ = net.backward(np.concatenate([ga, gp, gn]))
        opt.step(grads)
        losses.append(float(loss))
    emb_te = net.forward(x_te)
    after = _one_nn(net.forward(x_tr), y_tr, emb_te, y_te)
    return {"losses": losses, "before": before, "after": after, "embedding": emb_te, "labels": y_te}


def _one_nn(e_tr, y_tr, e_te, y_te):
    d = ((e_te[:, None, :] - e_tr[None, :, :]) ** 2).sum(-1)
    return float(np.mean(y_tr[d.argmin(axis=1)] == y_te))


def vae(steps, rng, progress):
    """A VAE with a 1-D latent on 1-D data from two Gaussians: reconstruction (MSE) plus the
    KL term from fastloss, with the reparameterisation's gradients written out."""
    data = np.concatenate([rng.normal(-2.0, 0.4, 2000), rng.normal(2.0, 0.4, 2000)])[:, None]
    enc = MLP([1, 32, 2], ["relu", "linear"], rng)  # -> (mu, logvar)
    dec = MLP([1, 32, 1], ["relu", "linear"], rng)
    opt_e, opt_d = Adam(enc.params, lr=3e-3), Adam(dec.params, lr=3e-3)
    history = []
    for _ in progress(range(steps), desc=f"{'VAE':>22s}", leave=False, disable=None):
        x = data[rng.integers(0, len(data), 64)]
        h = enc.forward(x)
        mu, logvar = h[:, :1], h[:, 1:]
        eps = rng.normal(size=mu.shape)
        z = mu + np.exp(0.5 * logvar) * eps
        recon = dec.forward(z)
        rec, g_recon = fl.mean_squared_error(recon, x, reduction="sum")
        kl, (g_mu, g_logvar) = fl.vae_kl_divergence(mu, logvar, reduction="sum")
        gd, g_z = dec.backward(g_recon / len(x))
        g_h = np.concatenate([g_z + g_mu / len(x), g_z * eps * 0.5 * np.exp(0.5 * logvar) + g_logvar / len(x)], 1)
        ge, _ = enc.backward(g_h)
        opt_d.step(gd)
        opt_e.step(ge)
        history.append((float(rec) / len(x), float(kl) / len(x)))
    samples = dec.forward(rng.normal(size=(4000, 1)))[:, 0]
    return {"history": history, "data": data[:, 0], "samples": samples}


def gan(steps, rng, progress):
    """A GAN on 1-D data drawn from N(3, 0.5): the discriminator and generator losses and
    their gradients with respect to the logits come from fastloss."""
    real_mean, real_std = 3.0, 0.5
    gen = MLP([4, 32, 1], ["relu", "linear"], rng)
    disc = MLP([1, 32, 1], ["tanh", "linear"], rng)  # a smooth critic keeps 1-D training stable
    opt_g, opt_d = Adam(gen.params, lr=1e-3, beta1=0.5), Adam(disc.params, lr=1e-3, beta1=0.5)
    history = []
    for _ in progress(range(steps), desc=f"{'GAN':>22s}", leave=False, disable=None):
        real = rng.normal(real_mean, real_std, size=(64, 1))
        fake = gen.forward(rng.normal(size=(64, 4)))
        logits = disc.forward(np.concatenate([real, fake]))
        d_loss, (g_real, g_fake) = fl.gan_discriminator_loss(logits[:64], logits[64:])
        gd, _ = disc.backward(np.concatenate([g_real, g_fake]))
        opt_d.step(gd)
        fake = gen.forward(rng.normal(size=(64, 4)))
        g_loss, g_logits = fl.gan_generator_loss(disc.forward(fake))
        _, g_sample = disc.backward(g_logits)  # through the discriminator, which is not updated
        gg, _ = gen.backward(g_sample)
        opt_g.step(gg)
        history.append((float(d_loss), float(g_loss)))
    samples = gen.forward(rng.normal(size=(4000, 4)))[:, 0]
    return {"history": history, "samples": samples, "real": rng.normal(real_mean, real_std, 4000)}
