"""Reproduce the Split MNIST columns of the seed paper's Table 1 (non-replay): 5 binary tasks, 2000 steps each.

    python examples/split_mnist.py                     # all methods, 3 seeds, the paper's protocol (CPU: hours)
    python examples/split_mnist.py --quick --seeds 1   # reduced run (a few minutes on 2 CPU cores)
"""

from reproduce_table1 import reproduce

if __name__ == "__main__":
    reproduce("split_mnist")
