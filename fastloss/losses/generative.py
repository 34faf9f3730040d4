"""Losses of generative models: the GAN pair (element-wise) and the VAE's KL term (row-wise)."""

import math

from ..math.portable import portable
from ..math.primitives import sigmoid, softplus, wide


@portable
def gan_discriminator(x, y, c, p):
    """softplus(-x) + softplus(y) for real logits ``x`` and fake logits ``y``:
    -[log D(real) + log(1 - D(fake))]. Gradients -sigmoid(-x) and sigmoid(y)."""
    return softplus(-x) + softplus(y), -sigmoid(-x), sigmoid(y), 0.0


@portable
def gan_generator(x, y, c, p):
    """Generator loss on fake logits ``x``, ``p = (saturating,)``.

    Non-saturating (default): softplus(-x) = -log D(G(z)), gradient -sigmoid(-x).
    Saturating: -softplus(x) = log(1 - D(G(z))), gradient -sigmoid(x) (Goodfellow 2014).
    """
    if p[0] != 0.0:
        return -softplus(x), -sigmoid(x), 0.0, 0.0
    return softplus(-x), -sigmoid(-x), 0.0, 0.0


@portable
def vae_kl_divergence(mu, logvar, v, c, gmu, glogvar, gv, h, gs, p):
    """-0.5 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)) over the row (Kingma and Welling).

    Written as 0.5 sum_j (mu_j^2 + expm1(logvar_j) - logvar_j); gradients mu and
    0.5 expm1(logvar).
    """
    total = 0.0
    want = gmu.shape[0] != 0
    for j in range(mu.shape[0]):
        m = wide(mu[j])
        lv = wide(logvar[j])
        e = math.expm1(lv)
        total += 0.5 * (m * m + (e - lv))
        if want:
            gmu[j] = gs * m
            glogvar[j] = gs * 0.5 * e
    return total
