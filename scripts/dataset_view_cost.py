"""Cost of one 128-sample batch read lazily through torchvision MNIST (DatasetView) against hypercl's in-memory tensor
(the same Split MNIST task 0), one thread: python scripts/dataset_view_cost.py"""
import time

import torch
import torchvision as tv

import hypercl
from hypercl.data.datasets import split_dataset

torch.set_num_threads(1)
root = hypercl.data.resolve_data_root()
tr = tv.datasets.MNIST(str(root), train=True, download=False, transform=tv.transforms.ToTensor())
b = split_dataset(tr, tr)
ours = hypercl.data.SplitMNIST(root, download=False)
g = torch.Generator().manual_seed(0)
idx = [torch.randperm(len(ours[0].y_train), generator=g)[:128] for _ in range(50)]
t0 = time.perf_counter()
lazy = [b[0].x_train[i] for i in idx]
t1 = time.perf_counter()
mem = [ours[0].x_train[i] for i in idx]
t2 = time.perf_counter()
print(f"DatasetView {1000 * (t1 - t0) / 50:.2f} ms/batch, tensor {1000 * (t2 - t1) / 50:.3f} ms/batch, "
      f"ratio {(t1 - t0) / (t2 - t1):.0f}x")
