"""Hypernetwork-protected generative replay (HNET+R, von Oswald et al. 2020; the seed paper's "+R" methods) and the
replay baselines LwF, DGR and DGR+distill (the seed paper's Table 2). See ``docs/replay.md``.

* :class:`VAELearner`: a VAE whose decoder a :class:`~hypercl.HyperNetwork` generates per task, protected by any
  strategy (``hnet``, ``iwr``, ``grow``); :class:`PlainReplay`: DGR's ordinary VAE.
* :class:`ReplayClassifier`: an ordinary classifier trained on the current task plus replayed inputs labelled by
  the previous classifier (soft or hard targets), with the CL1/CL2/CL3 heads.
* :func:`run_replay_seed`, :func:`replay_method_config`, :data:`REPLAY_METHODS`: the runner (same output format as
  :func:`hypercl.experiments.run_seed`); :func:`write_sample_grid`: a PNG of what the VAE remembers.
"""

from .classifier import ReplayBatch, ReplayClassifier
from .generative import (
    GeneratedSampler,
    PlainReplay,
    PlainSampler,
    SelfPairs,
    VAELearner,
    decoder_only,
    frozen_copy,
    wrap_vae_decoder,
)
from .losses import hard_labels, masked_distillation_loss, masked_hard_label_loss
from .runner import (
    PAPER_TABLE2,
    REPLAY_BENCHMARK_CONFIGS,
    REPLAY_METHOD_LABELS,
    REPLAY_METHOD_SPECS,
    REPLAY_METHODS,
    REPLAY_QUICK,
    build_replay_classifier,
    build_replay_model,
    is_replay_method,
    replay_method_config,
    replay_run_config,
    run_replay_seed,
)
from .samples import replay_images, write_sample_grid

__all__ = [
    "ReplayBatch",
    "ReplayClassifier",
    "GeneratedSampler",
    "PlainReplay",
    "PlainSampler",
    "SelfPairs",
    "VAELearner",
    "decoder_only",
    "frozen_copy",
    "wrap_vae_decoder",
    "hard_labels",
    "masked_distillation_loss",
    "masked_hard_label_loss",
    "PAPER_TABLE2",
    "REPLAY_METHOD_LABELS",
    "REPLAY_BENCHMARK_CONFIGS",
    "REPLAY_METHOD_SPECS",
    "REPLAY_METHODS",
    "REPLAY_QUICK",
    "build_replay_classifier",
    "build_replay_model",
    "is_replay_method",
    "replay_method_config",
    "replay_run_config",
    "run_replay_seed",
    "replay_images",
    "write_sample_grid",
]
