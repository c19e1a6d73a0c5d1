"""hypercl: continual learning with hypernetworks (LSTM_NET, HNET, IWR, GROW) for any PyTorch module."""

from . import baselines  # noqa: F401 (registers the strategy names finetune, ewc, online_ewc, si)
from .checkpoint import CheckpointError
from .chunking import ChunkPlan
from .direct import DirectWeights
from .generators import ChunkedMLPGenerator, Generator, GRUGenerator, LSTMGenerator, MLPGenerator, RecurrentGenerator
from .hypernetwork import HyperNetwork
from .independent import IndependentWeights
from .learner import ContinualLearner, NonFiniteLossError
from .scenarios import SCENARIOS
from .strategies import Grow, HNETRegularizer, IWRegularizer, NoRegularizer, Strategy, get_strategy
from .target import FunctionalTarget, wrap

__version__ = "0.1.0"

__all__ = [
    "wrap",
    "FunctionalTarget",
    "ChunkPlan",
    "HyperNetwork",
    "Generator",
    "MLPGenerator",
    "ChunkedMLPGenerator",
    "RecurrentGenerator",
    "LSTMGenerator",
    "GRUGenerator",
    "DirectWeights",
    "IndependentWeights",
    "ContinualLearner",
    "NonFiniteLossError",
    "CheckpointError",
    "SCENARIOS",
    "Strategy",
    "NoRegularizer",
    "HNETRegularizer",
    "IWRegularizer",
    "Grow",
    "get_strategy",
]
