"""Train a tiny BERT (Hugging Face ``transformers``, built from a config: no download) through a hypernetwork on two
tasks, fed dict batches (``input_ids`` + ``attention_mask``) from DataLoaders, and evaluate CL1/CL2/CL3.

    pip install transformers && python examples/wrap_transformer.py      # well under a minute on 2 CPU cores

Each task: a sequence of random tokens (padded tails masked out) whose label says which of the task's two key tokens
it holds. ``hypercl.wrap`` takes the model as it is; its ``ModelOutput`` is reduced to ``.logits`` automatically.
"""

import time
import warnings

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertForSequenceClassification

import hypercl


def token_task(n, keys, g, vocab=40, length=10):
    ids = torch.randint(5, vocab, (n, length), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    ids[torch.arange(n), torch.randint(1, 4, (n,), generator=g)] = torch.tensor(keys)[y]
    lengths = torch.randint(5, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}, y


class Samples(Dataset):
    """(dict of one sample's tensors, label): the default collate makes dict batches."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.x.items()}, self.y[i]


def main():
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*batching rule.*")  # torch's note on its slow per-op fallback
    g = torch.Generator().manual_seed(0)
    keys = ([1, 2], [3, 4])
    train = [DataLoader(Samples(*token_task(256, k, g)), batch_size=32, shuffle=True) for k in keys]
    test = [DataLoader(Samples(*token_task(128, k, g)), batch_size=64) for k in keys]
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    target = hypercl.wrap(BertForSequenceClassification(config))
    print(target)
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(target, generator="lstm"), strategy="iwr",
                                       strategy_kwargs={"beta": 0.1, "fisher_samples": 64}, lr=3e-3)
    start = time.time()
    for t, loader in enumerate(train):
        learner.fit_task(t, loader, iterations=200, num_classes=2)
        res = learner.evaluate(test, scenarios=["cl1", "cl2", "cl3"])
        print(f"after task {t}: " + ", ".join(f"{s.upper()} {res[s]['average']:.3f}" for s in res))
    print(f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
