"""Generator backends: given task embeddings ``(B, E)`` they return raw target weights ``(B, n_chunks, C)``."""

from .base import ACTIVATIONS, Generator, make_activation
from .mlp import ChunkedMLPGenerator, MLPGenerator
from .recurrent import GRUGenerator, LSTMGenerator, RecurrentGenerator

__all__ = [
    "ACTIVATIONS",
    "Generator",
    "make_activation",
    "MLPGenerator",
    "ChunkedMLPGenerator",
    "RecurrentGenerator",
    "LSTMGenerator",
    "GRUGenerator",
]
