"""Reproduce the Permuted MNIST columns of the seed paper's Table 1 (non-replay): 10 tasks, inputs padded to 32x32,
first task unpermuted, 5000 steps per task.

    python examples/permuted_mnist.py                     # all methods, 3 seeds (CPU: many hours; use a GPU)
    python examples/permuted_mnist.py --quick --seeds 1   # reduced run: 3 tasks, data subset
"""

from reproduce_table1 import reproduce

if __name__ == "__main__":
    reproduce("permuted_mnist")
