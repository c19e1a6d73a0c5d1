"""The variational autoencoder of the replay setting (seed paper section 4.1): fully connected encoder and decoder,
two hidden layers of 400 units each, a 100-dimensional latent space, a Bernoulli (sigmoid) decoder for pixels in [0, 1].

It is an ordinary ``nn.Module``: :func:`hypercl.wrap` turns it (or its ``decoder`` alone) into a functional target, so
a :class:`~hypercl.HyperNetwork` can generate its weights per task (see ``hypercl.replay`` and ``docs/replay.md``).

Layout::

    encoder: in → 400 → 400 → 2·latent   (ReLU between layers; the output is [μ, log σ²])
    decoder: latent → 400 → 400 → in     (ReLU between layers; the output is the Bernoulli LOGITS of the pixels)

``forward(x, eps=None)`` encodes, draws ``z = μ + eps·σ`` (``eps ~ N(0, I)`` unless given) and decodes; it returns
``(logits, mu, logvar)``; ``vae_loss(*model(x), x)`` is the negative ELBO.
"""

from __future__ import annotations

from typing import Optional, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .mlp import MLP
from .registry import build_model, register_model

__all__ = ["VAE", "vae", "vae_loss"]


class VAE(nn.Module):
    """Fully connected VAE with a Bernoulli decoder.

    Args:
        in_features: pixels per image (784 for MNIST, 1024 for MNIST padded to 32×32).
        hidden: hidden layer sizes of the encoder; the decoder uses them in reverse order (``(400, 400)``).
        latent_dim: size of ``z`` (100).
        activation: hidden activation (see :func:`hypercl.activations.make_activation`).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (400, 400),
        latent_dim: int = 100,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if int(in_features) <= 0 or int(latent_dim) <= 0 or any(int(h) <= 0 for h in hidden):
            raise ValueError(
                f"VAE sizes must be positive, got in={in_features}, hidden={list(hidden)}, latent={latent_dim}"
            )
        self.in_features = int(in_features)
        self.latent_dim = int(latent_dim)
        hidden = [int(h) for h in hidden]
        self.encoder = MLP(self.in_features, hidden, 2 * self.latent_dim, activation)
        self.decoder = MLP(self.latent_dim, list(reversed(hidden)), self.in_features, activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z | x)``, each ``(..., latent_dim)``."""
        h = self.encoder(x)
        return h[..., : self.latent_dim], h[..., self.latent_dim :]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the pixels (apply ``sigmoid`` for pixel means)."""
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, eps: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, mu, logvar)`` with the reparameterised ``z = mu + eps * exp(logvar / 2)``."""
        mu, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` images (pixel means in [0, 1]) decoded from ``z ~ N(0, I)``."""
        ref = next(self.decoder.parameters())
        z = torch.randn(int(n), self.latent_dim, generator=generator, dtype=ref.dtype)
        return torch.sigmoid(self.decode(z.to(ref.device)))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, latent_dim={self.latent_dim}"


def vae_loss(
    logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Negative ELBO per pixel: ``mean_pixels BCE(sigmoid(logits), x) + KL(q(z|x) || N(0, I)) / D``.

    Both terms are divided by the number of pixels ``D``, the convention of the two reference codes this package
    follows (von Oswald et al. 2020, ``mnist/replay/train_replay.py``; van de Ven & Tolias 2019,
    ``vae_models.py`` with ``average=True``), so the loss is on the scale of a per-pixel cross-entropy.
    The argument order matches ``VAE.forward``'s output: ``vae_loss(*model(x), x)``. ``reduction="mean"`` averages
    over the batch, ``"none"`` returns one value per sample.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(-1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1) / x.shape[-1]
    per_sample = rec + kl
    return per_sample.mean() if reduction == "mean" else per_sample


@register_model("vae")
def _vae(
    in_features: int = 784, hidden: Sequence[int] = (400, 400), latent_dim: int = 100, activation: str = "relu"
) -> VAE:
    return VAE(in_features, list(hidden), latent_dim, activation)


def vae(
    in_features: int = 784, hidden: Sequence[int] = (400, 400), latent_dim: int = 100, activation: str = "relu"
) -> VAE:
    """A :class:`VAE` tagged for checkpoints, e.g. ``vae(784)`` for Split MNIST (the seed paper's 400-400, z=100)."""
    return cast(
        VAE,
        build_model(
            "vae",
            in_features=int(in_features),
            hidden=[int(h) for h in hidden],
            latent_dim=int(latent_dim),
            activation=activation,
        ),
    )
