import os

import pytest
import torch

# tiny test problems gain nothing from threads, and extra threads thrash a loaded machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
