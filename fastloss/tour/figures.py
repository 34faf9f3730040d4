"""The tour's figures (matplotlib, written as PNG files)."""

import numpy as np

import fastloss as fl


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(task, runs, path):
    """Train and validation loss per epoch, one panel per loss, as the articles plot them."""
    plt = _pyplot()
    cols = min(3, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs):
        ax.plot(run.train_loss, label="train")
        ax.plot(run.test_loss, label="validation")
        ax.set_title(run.loss)
        ax.set_xlabel("epoch")
        ax.legend()
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle(f"{task}: loss during training")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def gallery(path):
    """Loss shapes and their gradients: regression losses against the residual, binary
    classification losses against the margin y * f(x) (labels +-1)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    r = np.linspace(-3, 3, 601)
    zero = np.zeros_like(r)
    for name, label, options in [
        ("mean_squared_error", "MSE", {}),
        ("mean_absolute_error", "MAE", {}),
        ("huber", "Huber (delta=1)", {}),
        ("pseudo_huber", "pseudo-Huber (delta=1)", {}),
        ("log_cosh", "log-cosh", {}),
    ]:
        res = fl.compute(name, r, zero, reduction="none", **options)
        axes[0, 0].plot(r, res.loss, label=label)
        axes[0, 1].plot(r, res.grad, label=label)
    m = np.linspace(-3, 3, 601)
    ones = np.ones_like(m)
    pm = np.full_like(m, 1.0)
    for label, res in [
        ("cross-entropy (logits)", fl.sigmoid_binary_cross_entropy(m, ones, reduction="none")),
        ("hinge", fl.hinge(m, pm, reduction="none")),
        ("squared hinge", fl.squared_hinge(m, pm, reduction="none")),
        ("focal (gamma=2, no alpha)", fl.sigmoid_focal_loss(m, ones, alpha=None, reduction="none")),
    ]:
        axes[1, 0].plot(m, res.loss, label=label)
        axes[1, 1].plot(m, res.grad, label=label)
    for ax, title in zip(axes.flat, ["regression losses", "their gradients", "classification losses",
                                     "their gradients"]):
        ax.set_title(title)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylim(-0.2, 4)
    axes[1, 0].set_ylim(-0.2, 4)
    for ax in axes[0]:
        ax.set_xlabel("residual pred - target")
    for ax in axes[1]:
        ax.set_xlabel("margin y f(x)")
    fig.suptitle("Loss shapes and gradients, computed by fastloss")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def generative(triplet, vae, gan, path):
    """The model-specific losses at work: a triplet embedding, a VAE and a GAN."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    emb, labels = triplet["embedding"], triplet["labels"]
    sc = axes[0].scatter(emb[:, 0], emb[:, 1], c=labels, cmap="tab10", s=6)
    fig.colorbar(sc, ax=axes[0], label="digit")
    axes[0].set_title(f"triplet loss: digits in 2-D (1-NN {triplet['after']:.0%})")
    bins = np.linspace(-4, 5, 80)
    axes[1].hist(vae["data"], bins=bins, density=True, alpha=0.5, label="data")
    axes[1].hist(vae["samples"], bins=bins, density=True, alpha=0.5, label="VAE samples")
    axes[1].set_title("VAE (reconstruction + fastloss KL)")
    axes[1].legend()
    axes[2].hist(gan["real"], bins=bins, density=True, alpha=0.5, label="real N(3, 0.5)")
    axes[2].hist(gan["samples"], bins=bins, density=True, alpha=0.5, label="generated")
    axes[2].set_title("GAN (fastloss discriminator/generator losses)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
