"""hypercl: continual learning with hypernetworks (LSTM_NET, HNET, IWR, GROW) for any PyTorch module."""

from .chunking import ChunkPlan
from .generators import ChunkedMLPGenerator, Generator, GRUGenerator, LSTMGenerator, MLPGenerator, RecurrentGenerator
from .hypernetwork import HyperNetwork
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
]
