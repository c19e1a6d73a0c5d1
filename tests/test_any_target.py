"""Any target network through fit_task, evaluate (CL1/CL2/CL3), the Fisher of eq. 4 and --parallel-seeds:
recurrent layers (vmap fallback), models returning more than logits, tuple/dict inputs, DataLoaders, clear errors."""

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import hypercl
from hypercl.batches import DataError
from hypercl.ensemble import SeedEnsemble
from hypercl.fisher import diagonal_empirical_fisher
from hypercl.target import VmapFallbackWarning
from helpers import conflicting_tasks, tiny_hnet, tiny_mlp

transformers = pytest.importorskip("transformers")


# ---------------------------------------------------------------------------------------------- models and data
class RNNClassifier(nn.Module):
    def __init__(self, cell="LSTM", d=3, h=12, k=4):
        super().__init__()
        self.rnn = getattr(nn, cell)(d, h, batch_first=True)
        self.out = nn.Linear(h, k)

    def forward(self, x):
        o, _ = self.rnn(x)
        return self.out(o[:, -1])


class WithFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(10, 16), nn.Linear(16, 2)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.head(h), h


class TwoInputs(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(6, 8), nn.Linear(4, 8), nn.Linear(8, k)

    def forward(self, xa, xb):
        return self.head(torch.relu(self.a(xa) + self.b(xb)))


def seq_tasks(n=192, seed=0):
    """Two 4-class tasks on sequences (L=5, d=3): the signs of the sums of two channels (shifted in task 1)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for shift in (0.0, 1.5):
        pair = []
        for _ in range(2):
            x = torch.randn(n, 5, 3, generator=g)
            y = (x[:, :, 0].sum(1) + shift > 0).long() + 2 * (x[:, :, 1].sum(1) > 0).long()
            pair.append((x, y))
        out.append(tuple(pair))
    return out


def token_task(n, keys, g, vocab=40, length=10, masked=True):
    """Label = which of two key tokens the model may see.

    masked=True (BERT): a random, non-prefix attention mask; the label's key sits at a random attended position and the
    other key at a random masked one, so without the mask both keys are visible at exchangeable positions and the
    task is at chance (0.49 measured with an all-ones mask). masked=False (GPT-2, ids only): the key sits early, the
    tail is padding (token 0)."""
    ids = torch.randint(5, vocab, (n, length), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    r, keys = torch.arange(n), torch.tensor(keys)
    if masked:
        order = torch.rand(n, length, generator=g).argsort(1)
        pos_key, pos_other = order[:, 0], order[:, 1]
        mask = (torch.rand(n, length, generator=g) < 0.5).long()
        mask[r, pos_key], mask[r, pos_other] = 1, 0
        ids[r, pos_key], ids[r, pos_other] = keys[y], keys[1 - y]
        return {"input_ids": ids, "attention_mask": mask}, y
    ids[r, torch.randint(1, 4, (n,), generator=g)] = keys[y]
    lengths = torch.randint(5, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}, y


class DictDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.x.items()}, self.y[i]


def tiny_bert():
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(cfg)


def quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


# ---------------------------------------------------------------------------------------------- transformers
BERT_KWARGS = {"hnet": {"beta": 0.1}, "iwr": {"beta": 0.1, "fisher_samples": 32}, "grow": {}}


@pytest.mark.parametrize("strategy", ["hnet", "iwr", "grow"])
def test_bert_dict_batches_from_a_dataloader(strategy):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train = [token_task(192, k, g) for k in ([1, 2], [3, 4])]
    test = [token_task(96, k, g) for k in ([1, 2], [3, 4])]
    target = hypercl.wrap(tiny_bert())
    seen_masks = []
    orig = target.module.forward

    def spy(*a, **kw):
        seen_masks.append(kw.get("attention_mask") is not None)
        return orig(*a, **kw)

    target.module.forward = spy
    generator = "chunked_mlp" if strategy == "hnet" else "lstm"
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(target, generator=generator), strategy=strategy,
                                       strategy_kwargs=BERT_KWARGS[strategy], lr=3e-3, batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t, (x, y) in enumerate(train):
            learner.fit_task(t, DataLoader(DictDataset(x, y), batch_size=32, shuffle=True),
                             iterations=100 if strategy == "hnet" else 200, num_classes=2)
        loaders = [DataLoader(DictDataset(x, y), batch_size=48) for x, y in test]
        res = learner.evaluate(loaders, scenarios=["cl1", "cl2", "cl3"])
    assert seen_masks and all(seen_masks)  # the mask reached the model in training AND evaluation
    assert res["cl1"]["average"] > 0.85, res["cl1"]  # chance (0.5) if the mask were dropped: see token_task
    assert res["cl2"]["average"] > 0.7
    assert 0.0 <= res["cl3"]["average"] <= 1.0
    if strategy == "iwr":
        assert set(learner.strategy.fisher) == {0, 1}


def test_gpt2_with_tied_embeddings_and_a_cache_in_its_output():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=30, n_positions=16, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    assert model.lm_head.weight is model.transformer.wte.weight
    target = hypercl.wrap(model, output=lambda out: out.logits[:, -1, :2])  # last token's scores of 2 "class" tokens
    assert "lm_head.weight" not in target.param_shapes  # the tied weight is generated once
    g = torch.Generator().manual_seed(1)
    tasks = []
    for keys in ([1, 2], [3, 4]):
        x, y = token_task(160, keys, g, vocab=30, length=8, masked=False)
        tasks.append((x["input_ids"], y))
    learner = hypercl.ContinualLearner(tiny_hnet(target, generator="lstm"), strategy="iwr",
                                       strategy_kwargs={"fisher_samples": 32}, lr=3e-3, batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t, d in enumerate(tasks):
            learner.fit_task(t, d, iterations=80)
        res = learner.evaluate(tasks, scenarios=["cl1", "cl3"])
    assert res["cl1"]["average"] > 0.8
    # the tied weight really is shared: the generated wte moves lm_head's logits
    p = learner.hnet(0)
    ids = tasks[0][0][:4]
    a = target(p, ids)
    p2 = dict(p)
    p2["transformer.wte.weight"] = p["transformer.wte.weight"] * 2
    assert not torch.allclose(a, target(p2, ids))


# ---------------------------------------------------------------------------------------------- recurrent targets
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_recurrent_targets_every_strategy_and_cl3(cell):
    tasks = seq_tasks()
    for strategy in ("none", "hnet", "iwr", "grow"):
        torch.manual_seed(0)
        target = hypercl.wrap(RNNClassifier(cell))
        learner = hypercl.ContinualLearner(tiny_hnet(target), strategy=strategy, lr=5e-3, batch_size=32,
                                           strategy_kwargs={"fisher_samples": 48} if strategy == "iwr" else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for t, (train, _) in enumerate(tasks):
                learner.fit_task(t, train, iterations=60)
            res = learner.evaluate([te for _, te in tasks], scenarios=["cl1", "cl2", "cl3"])
            learner.evaluate([te for _, te in tasks], scenarios=["cl3"], record=False)
        fallback = [w for w in caught if issubclass(w.category, VmapFallbackWarning)]
        assert any(f"aten::{cell.lower()}" in str(w.message) or "aten::rnn_tanh" in str(w.message)
                   for w in fallback)  # names the op (aten::lstm.input, ...)
        assert len([w for w in fallback if "target.batched" in str(w.message)]) == 1  # warned once
        assert res["cl1"]["average"] > 0.5, (cell, strategy, res["cl1"])  # chance: 0.25
        assert res["cl3"]["average"] > 0.3
        if strategy == "iwr":
            assert all(torch.isfinite(f).all() for f in learner.strategy.fisher.values())


@pytest.mark.parametrize("cell,op", [("LSTM", "aten::lstm"), ("GRU", "aten::gru"), ("RNN", "aten::rnn_tanh")])
def test_loop_fallback_gives_the_vmapped_numbers(cell, op):
    torch.manual_seed(0)
    rnn_target = hypercl.wrap(RNNClassifier(cell).eval())
    stacked = {n: torch.randn(3, *s) * 0.3 for n, s in rnn_target.param_shapes.items()}
    x = torch.randn(7, 5, 3)
    with pytest.warns(VmapFallbackWarning, match=op):
        got = rnn_target.batched(stacked, x)
    expected = torch.stack([rnn_target({n: v[i] for n, v in stacked.items()}, x) for i in range(3)])
    assert torch.allclose(got, expected, atol=1e-6)
    assert rnn_target.vmap_ok == {("weight sets (target.batched)", False): False}
    # the Fisher fallback (a loop over samples) equals explicit per-sample autograd
    params = {n: v[0] for n, v in stacked.items()}
    y = torch.randint(0, 4, (7,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fisher = diagonal_empirical_fisher(rnn_target, params, [(x[:4], y[:4]), (x[4:], y[4:])],
                                           torch.nn.functional.cross_entropy)
    for n in params:
        ref = torch.zeros_like(params[n])
        for i in range(7):
            p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
            loss = torch.nn.functional.cross_entropy(rnn_target(p, x[i : i + 1]), y[i : i + 1])
            ref += torch.autograd.grad(loss, p[n])[0] ** 2 / 7
        assert torch.allclose(fisher[n], ref, atol=1e-6), n
    # an MLP keeps the vmapped path
    mlp = hypercl.wrap(tiny_mlp())
    mlp.batched({n: torch.randn(2, *s) for n, s in mlp.param_shapes.items()}, torch.randn(3, 10))
    assert mlp.vmap_ok == {("weight sets (target.batched)", True): True}


def test_parallel_seeds_with_a_recurrent_target_equal_sequential():
    tasks = seq_tasks(n=96)

    def make(seed):
        torch.manual_seed(seed)
        return hypercl.ContinualLearner(tiny_hnet(hypercl.wrap(RNNClassifier("LSTM"))), strategy="hnet",
                                        lr=5e-3, batch_size=32, seed=seed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = make(0)
        seq.fit_task(0, tasks[0][0], iterations=10)
        ens = SeedEnsemble.build(make, [0, 1])
        ens.fit_task(0, tasks[0][0], iterations=10)
        ens.evaluate([tasks[0][1]], scenarios=["cl3"])
    with torch.no_grad():
        assert torch.allclose(seq.hnet.generate_flat([0]), ens.members[0].hnet.generate_flat([0]), atol=1e-4)


# ---------------------------------------------------------------------------------------------- outputs and inputs
def test_model_returning_logits_and_features():
    tasks = conflicting_tasks(n=200)[:2]
    target = hypercl.wrap(WithFeatures())
    out = target(target.named_parameters_dict(), torch.randn(3, 10))
    assert out.shape == (3, 2)
    learner = hypercl.ContinualLearner(tiny_hnet(target), strategy="iwr", lr=5e-3, batch_size=32)
    for t, (train, _) in enumerate(tasks):
        learner.fit_task(t, train, iterations=80)
    assert learner.evaluate([te for _, te in tasks], scenarios=["cl1"])["cl1"]["average"] > 0.8
    # a callable / a name choose something else; a bad name says what to do
    assert hypercl.wrap(WithFeatures(), output=lambda o: o[1]).__call__(
        target.named_parameters_dict(), torch.randn(3, 10)).shape == (3, 16)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return {"scores": self.lin(x)}

    odd = hypercl.wrap(Odd())
    with pytest.raises(TypeError, match=r"returned a dict.*output="):
        odd(odd.named_parameters_dict(), torch.randn(1, 2))
    assert hypercl.wrap(Odd(), output="scores")(odd.named_parameters_dict(), torch.randn(1, 2)).shape == (1, 2)


def test_two_positional_inputs_in_memory_and_in_a_dataloader():
    g = torch.Generator().manual_seed(0)
    data = []
    for sign in (1.0, -1.0):
        xa, xb = torch.randn(256, 6, generator=g), torch.randn(256, 4, generator=g)
        y = ((xa[:, 0] + xb[:, 0]) * sign > 0).long()
        data.append(((xa, xb), y))
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(hypercl.wrap(TwoInputs())), strategy="iwr", lr=5e-3, batch_size=32,
                                       strategy_kwargs={"fisher_samples": 64})
    learner.fit_task(0, data[0], iterations=100)  # (X, Y) with X a tuple, batched by index
    loader = DataLoader(torch.utils.data.TensorDataset(*data[1][0], data[1][1]), batch_size=32, shuffle=True,
                        collate_fn=lambda items: ((torch.stack([i[0] for i in items]),
                                                   torch.stack([i[1] for i in items])),
                                                  torch.stack([i[2] for i in items])))
    learner.fit_task(1, loader, iterations=100, num_classes=2)
    res = learner.evaluate({0: data[0], 1: loader}, scenarios=["cl1", "cl2"])
    assert res["cl1"]["average"] > 0.8, res


# ---------------------------------------------------------------------------------------------- temperatures
def test_temperatures_change_the_inferred_task():
    tasks = conflicting_tasks(n=200)
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(), strategy="hnet", lr=5e-3, batch_size=32)
    for t, (train, _) in enumerate(tasks[:2]):
        learner.fit_task(t, train, iterations=60)
    test = [te for _, te in tasks[:2]]
    plain = learner.evaluate(test, scenarios=["cl2", "cl3"], record=False)
    ones = learner.evaluate(test, scenarios=["cl2", "cl3"], record=False, temperatures=[1.0, 1.0])
    assert ones == plain
    hot = learner.evaluate(test, scenarios=["cl3"], record=False, temperatures=torch.tensor([1.0, 1e4]))
    # task 1's distribution flattened to uniform: every sample is attributed to task 0
    assert hot["cl3"]["task_inference"][0] == 1.0 and hot["cl3"]["task_inference"][1] == 0.0
    with pytest.raises(ValueError, match="temperatures"):
        learner.evaluate(test, temperatures=[1.0])


# ---------------------------------------------------------------------------------------------- clear errors
def test_bad_data_errors_name_the_task_the_sizes_and_the_fix():
    (train, _), _, _ = conflicting_tasks(n=50)
    x, y = train

    def fresh(model=None, **kw):
        return hypercl.ContinualLearner(tiny_hnet(model), lr=1e-3, batch_size=16, **kw)

    with pytest.raises(DataError, match=r"task 0: X has 50 samples but Y has 49"):
        fresh().fit_task(0, (x, y[:49]), iterations=1)
    with pytest.raises(DataError, match=r"task 0.*dtype torch.float32.*y.long\(\)"):
        fresh().fit_task(0, (x, y.float()), iterations=1)
    with pytest.raises(DataError, match=r"task 0.*shape \(50, 2\).*argmax"):
        fresh().fit_task(0, (x, torch.nn.functional.one_hot(y)), iterations=1)
    with pytest.raises(DataError, match="task 0 has no samples"):
        fresh().fit_task(0, (x[:0], y[:0]), iterations=1, num_classes=2)
    with pytest.raises(DataError, match=r"task 0: labels range over 0..1.*1 classes"):
        fresh().fit_task(0, (x, y), iterations=1, num_classes=1)
    with pytest.raises(DataError, match=r"task 0 needs output units \[0, 3\).*2 outputs.*at least 3"):
        fresh().fit_task(0, (x, y + (y == 1).long()), iterations=1)  # labels 0..2 on a 2-output model
    with pytest.raises(DataError, match="no batches"):
        fresh().fit_task(0, [], iterations=1, num_classes=2)
    with pytest.raises(DataError, match="one-pass iterator.*num_classes="):
        fresh().fit_task(0, iter([(x, y)]), iterations=1)
    # an inferred count from the first batch; a later batch beyond it is an error
    batches = [(x[:10], torch.zeros(10, dtype=torch.long)), (x[10:20], torch.ones(10, dtype=torch.long))]
    with pytest.raises(DataError, match=r"task 0: labels range over 1..1.*1 classes"):
        fresh().fit_task(0, batches, iterations=2)
    # a benchmark task's own count wins over y.max() + 1
    task = type("Task", (), {"x_train": x, "y_train": torch.zeros(50, dtype=torch.long), "num_classes": 2})()
    learner = fresh()
    learner.fit_task(0, task, iterations=1)
    assert learner.heads.num_classes[0] == 2
    with pytest.raises(DataError, match="task 0: labels range over 5..5.*2 classes"):
        learner.evaluate([(x, torch.full((50,), 5))])
    with pytest.raises(ValueError, match="task 0 has no test samples"):
        learner.evaluate([[]])


def test_lwf_replay_and_ewc_with_two_positional_inputs():
    from hypercl.replay import ReplayClassifier

    g = torch.Generator().manual_seed(0)
    data = []
    for sign in (1.0, -1.0):
        xa, xb = torch.randn(128, 6, generator=g), torch.randn(128, 4, generator=g)
        data.append(((xa, xb), ((xa[:, 0] + xb[:, 0]) * sign > 0).long()))
    torch.manual_seed(0)
    lwf = ReplayClassifier(hypercl.DirectWeights(TwoInputs()), scenario="cl2", source="current", batch_size=32)
    for t, d in enumerate(data):
        assert lwf.fit_task(t, d, iterations=30)["replay"] == (t == 1)
    assert 0.0 <= lwf.evaluate(data, scenarios=["cl2"])["cl2"]["average"] <= 1.0
    ewc = hypercl.ContinualLearner(hypercl.DirectWeights(TwoInputs(k=4)), strategy="ewc", scenario="cl1", batch_size=32,
                                   strategy_kwargs={"fisher_labels": "predicted"})
    for t, d in enumerate(data):
        ewc.fit_task(t, d, iterations=30)
    assert ewc.evaluate(data, scenarios=["cl1"])["cl1"]["average"] > 0.5
