"""A small variational autoencoder in torch; its anomaly score is the reconstruction error plus the KL term.

The score of a reading is its negative evidence lower bound under a unit-variance Gaussian
decoder: ``0.5 * sum((x - decoder(mu))**2) + KL(q(z|x) || N(0, I))``. The squared
reconstruction error catches readings the decoder cannot reproduce; the KL term catches
readings the encoder can only place far from where training readings live (an
autoencoder with enough capacity otherwise "reconstructs" an extreme value of a feature it
encodes well, and plain reconstruction error misses it). On the simulated fleet the KL
term raises the VAE's PR-AUC markedly (see README).

Training uses whole tensors and slices them into large mini-batches (no DataLoader, no
worker processes); the shuffling and the reparameterisation noise come from one seeded
``torch.Generator``, so a fit is deterministic for a given seed on one thread. Scoring
decodes the posterior mean (no sampling), so scores are deterministic too.

The optimiser is Adam written out on the tensors (:class:`Adam`), the same arithmetic as
``torch.optim.Adam``'s single-tensor path that torch takes on the CPU (bit-for-bit equal weights,
tested): ``torch.optim`` imports ``torch._dynamo`` on the first step, which costs a training
process about 3 s of start-up for nothing a small VAE needs.

Only training needs torch. A fitted VAE keeps its weights as NumPy arrays and scores with a NumPy forward
pass (float32, as the module computes; ``einsum``, so a score does not depend on the batch it came in), and a registered model stores them as ``vae.npz`` (NumPy, no
pickle): scoring processes (detect_anomalies, the live service, Dask workers) never import torch, which
costs each of them about 4 s of start-up. A model registered before stored ``vae.pt`` (a torch
``state_dict``); it still loads, through torch with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("bms.anomaly")

#: the module's layers in forward order, as ``state_dict`` names them (Linear layers of ``nn.Sequential``)
ENCODER = ("encoder.0", "encoder.2")
DECODER = ("decoder.0", "decoder.2", "decoder.4")
WEIGHT_NAMES = tuple(f"{layer}.{part}" for layer in (*ENCODER, "mu", "logvar", *DECODER) for part in ("weight", "bias"))


def _elu(x: np.ndarray) -> np.ndarray:
    """torch.nn.ELU (alpha 1): x above 0, expm1(x) at or below."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _torch() -> Any:
    import torch
    from bms_schema.runtime import torch_threads

    torch_threads()
    return torch


@dataclass
class VAEConfig:
    hidden: int = 32
    latent: int = 4
    epochs: int = 30
    batch_size: int = 2048
    learning_rate: float = 3e-3
    beta: float = 0.05
    max_steps: int = 1500
    max_train_rows: int = 60_000
    seed: int = 0


def build_module(n_features: int, config: VAEConfig) -> Any:
    torch = _torch()
    nn = torch.nn
    module_base: Any = nn.Module  # torch is imported lazily, so the base class is a runtime value

    class VAE(module_base):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Linear(n_features, config.hidden), nn.ELU(), nn.Linear(config.hidden, config.hidden), nn.ELU()
            )
            self.mu = nn.Linear(config.hidden, config.latent)
            self.logvar = nn.Linear(config.hidden, config.latent)
            self.decoder = nn.Sequential(
                nn.Linear(config.latent, config.hidden),
                nn.ELU(),
                nn.Linear(config.hidden, config.hidden),
                nn.ELU(),
                nn.Linear(config.hidden, n_features),
            )

        def forward(self, x: Any, noise: Any | None = None) -> tuple[Any, Any, Any]:
            h = self.encoder(x)
            mu, logvar = self.mu(h), self.logvar(h).clamp(-8.0, 8.0)
            z = mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
            return self.decoder(z), mu, logvar

    return VAE()


class Adam:
    """Adam (Kingma & Ba) without weight decay or AMSGrad: ``torch.optim.Adam``'s CPU arithmetic, op for op.

    ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 * v + (1 - beta2) * g * g``, then
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``; parameters without a
    gradient are left alone, as torch does.
    """

    def __init__(
        self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        torch = _torch()
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [0] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        torch = _torch()
        beta1, beta2 = self.betas
        with torch.no_grad():
            for i, param in enumerate(self.params):
                grad = param.grad
                if grad is None:
                    continue
                self.steps[i] += 1
                step = float(self.steps[i])
                self.exp_avg[i].lerp_(grad, 1 - beta1)
                self.exp_avg_sq[i].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = self.lr / (1 - beta1**step)
                denom = (self.exp_avg_sq[i].sqrt() / (1 - beta2**step) ** 0.5).add_(self.eps)
                param.addcdiv_(self.exp_avg[i], denom, value=-step_size)


class VAEDetector:
    """VAE detector: fit on scaled features, score = reconstruction error + KL (negative ELBO) per row."""

    def __init__(self, config: VAEConfig | None = None):
        self.config = config or VAEConfig()
        self.module: Any = None  # the torch module, only in the process that fitted it
        self.weights: dict[str, np.ndarray] | None = None  # float32 arrays by state_dict name: what scores
        self.n_features: int | None = None
        self.fit_seconds: float = 0.0

    def fit(self, X: np.ndarray) -> "VAEDetector":
        torch = _torch()
        cfg = self.config
        start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        if len(X) > cfg.max_train_rows:
            X = X[np.sort(rng.choice(len(X), cfg.max_train_rows, replace=False))]
        self.n_features = X.shape[1]
        self.module = build_module(self.n_features, cfg)
        data = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        optimiser = Adam(self.module.parameters(), lr=cfg.learning_rate)
        n = data.shape[0]
        batch = min(cfg.batch_size, n)
        steps_per_epoch = max(1, n // batch)
        epochs = max(1, min(cfg.epochs, cfg.max_steps // steps_per_epoch))
        self.module.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for step in range(steps_per_epoch):
                xb = data[order[step * batch : (step + 1) * batch]]
                noise = torch.randn(xb.shape[0], cfg.latent, generator=generator)
                recon, mu, logvar = self.module(xb, noise)
                rec = ((recon - xb) ** 2).sum(dim=1).mean()
                kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
                loss = rec + cfg.beta * kld
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self.module.eval()
        self.weights = {name: value.detach().numpy().copy() for name, value in self.module.state_dict().items()}
        self.fit_seconds = time.perf_counter() - start
        log.info("VAE: %d rows, %d epochs x %d steps in %.2fs", n, epochs, steps_per_epoch, self.fit_seconds)
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a Dask worker's copy of a fitted detector) without the torch module: scoring needs only
        the NumPy ``weights``, and a process that unpickles the detector does not import torch for it."""
        state = self.__dict__.copy()
        state["module"] = None
        return state

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The module's forward pass on the posterior mean, in NumPy float32: (reconstruction, mu, logvar)."""
        w = self.weights
        assert w is not None

        def linear(h: np.ndarray, layer: str) -> np.ndarray:
            # einsum without BLAS: each output sums its products in one fixed order, whatever the batch's shape
            return np.einsum("ik,jk->ij", h, w[f"{layer}.weight"], optimize=False) + w[f"{layer}.bias"]

        h = x
        for layer in ENCODER:
            h = _elu(linear(h, layer))
        mu, logvar = linear(h, "mu"), np.clip(linear(h, "logvar"), -8.0, 8.0)
        z = mu
        for layer in DECODER[:-1]:
            z = _elu(linear(z, layer))
        return linear(z, DECODER[-1]), mu, logvar

    def score(self, X: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Negative ELBO per row: 0.5 * squared reconstruction error + KL (higher = more anomalous).

        The same for a row in any batch (a float32 BLAS product depended on the batch's shape in its last bits, so
        one reading scored live, in a packet, and in a batch got scores either side of a tie of the training
        scores, and different surprises): float32 as the module computes, products summed by ``einsum``."""
        if self.weights is None:
            raise RuntimeError("VAEDetector is not fitted")
        out = np.empty(len(X), dtype=np.float64)
        for start in range(0, len(X), chunk):
            xb = np.ascontiguousarray(X[start : start + chunk], dtype=np.float32)
            recon, mu, logvar = self._forward(xb)
            rec = 0.5 * ((recon - xb) ** 2).sum(axis=1)
            kld = -0.5 * (1 + logvar - mu * mu - np.exp(logvar)).sum(axis=1)
            out[start : start + chunk] = rec + kld
        return out

    # -- persistence (NumPy arrays + JSON config; no pickle) ------------------------------
    def state(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "config": self.config.__dict__}

    def save(self, path: Any) -> None:
        """Write the weights to ``path`` (``.npz``, no pickle)."""
        from bms_schema.safe_io import save_arrays

        if self.weights is None:
            raise RuntimeError("VAEDetector is not fitted")
        save_arrays(path, **self.weights)

    @classmethod
    def load(cls, path: Any, state: dict[str, Any]) -> "VAEDetector":
        """Read weights written by :meth:`save` (``.npz``), or an older model's torch ``state_dict`` (``.pt``)."""
        from pathlib import Path

        from bms_schema.errors import ModelError
        from bms_schema.safe_io import load_arrays

        detector = cls(VAEConfig(**state["config"]))
        detector.n_features = int(state["n_features"])
        path = Path(path)
        if path.suffix == ".pt":
            torch = _torch()
            weights = {k: v.numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
        else:
            weights = load_arrays(path)
        missing = [name for name in WEIGHT_NAMES if name not in weights]
        if missing:
            raise ModelError(f"VAE weights at {path} lack {', '.join(missing)}: retrain the anomaly model")
        detector.weights = {name: np.asarray(weights[name], dtype=np.float32) for name in WEIGHT_NAMES}
        if detector.weights["encoder.0.weight"].shape[1] != detector.n_features:
            raise ModelError(
                f"VAE weights at {path} take {detector.weights['encoder.0.weight'].shape[1]} features, its config says "
                f"{detector.n_features}: retrain the anomaly model"
            )
        return detector
