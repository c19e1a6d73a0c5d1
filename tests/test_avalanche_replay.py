"""GeneratedReplayPlugin: hypernetwork-protected generative replay (the seed paper's "+R") under Avalanche's own
strategies and streams (real Avalanche, no mocks)."""

import pytest
import torch
from torch import nn

pytest.importorskip("avalanche", reason='Avalanche is not installed: pip install "hypercl[avalanche]"')
from avalanche.models import MultiHeadClassifier, MultiTaskModule  # noqa: E402
from avalanche.training import Naive  # noqa: E402
from test_avalanche import ACC, D, quiet, stream  # noqa: E402

from hypercl.avalanche import GeneratedReplayPlugin  # noqa: E402
from hypercl.checkpoint import CheckpointError  # noqa: E402
from hypercl.replay import masked_distillation_loss  # noqa: E402

SMALL = dict(vae_hidden=[32], latent_dim=4, hnet_kwargs={"hidden_size": 16, "chunk_size": 200})


def classifier(out: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, out))


class MultiHead(MultiTaskModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D, 32), nn.ReLU())
        self.head = MultiHeadClassifier(32, initial_out_features=2)

    def forward_single_task(self, x, task_label):
        return self.head(self.body(x), task_label)


def naive(model, plugins=(), epochs=15):
    torch.manual_seed(0)
    return Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), train_mb_size=32,
                 train_epochs=epochs, evaluator=quiet(), plugins=list(plugins))


def first_task_accuracy(strategy, bench):
    strategy.train(bench.train_stream[0])
    before = strategy.eval(bench.test_stream[:1])[ACC.format(t=0, e=0)]
    strategy.train(bench.train_stream[1])
    return before, strategy.eval(bench.test_stream)[ACC.format(t=0, e=0)]


@pytest.mark.parametrize("method", ["lstm_net_grow", "hnet"])
def test_generated_replay_keeps_the_first_experience_where_naive_forgets_it(method):
    """Class-incremental (one 4-way head): Naive forgets experience 0; the same strategy with the plugin keeps it,
    although no input of experience 0 is stored."""
    bench = stream(task_labels=False)
    torch.manual_seed(0)
    plain = first_task_accuracy(naive(classifier()), bench)
    torch.manual_seed(0)
    plugin = GeneratedReplayPlugin(method, replay_iterations=300, seed=0, **SMALL)
    replayed = first_task_accuracy(naive(classifier(), [plugin]), bench)
    assert plain[0] >= 0.9 and replayed[0] >= 0.9
    assert plain[1] <= 0.2  # forgotten: the head drifts to the second experience's classes
    assert replayed[1] >= plain[1] + 0.5
    assert plugin.classes == [[0, 1], [2, 3]] and plugin.vae.learned_tasks == [0, 1]


def test_replayed_inputs_come_in_the_streams_value_range_from_each_learned_experience():
    bench = stream(task_labels=False)
    plugin = GeneratedReplayPlugin("lstm_net_grow", replay_iterations=200, replay_batch_size=10, seed=0, **SMALL)
    naive(classifier(), [plugin], epochs=1).train(bench.train_stream)
    x, owner = plugin.replay_inputs()
    assert x.shape == (10, D) and torch.equal(owner, torch.arange(2).repeat_interleave(5))  # ceil(10 / 2) per task
    lo, hi = plugin.scale
    data = bench.train_stream[0].dataset.eval()
    assert lo == pytest.approx(float(torch.stack([data[i][0] for i in range(len(data))]).min()))
    assert bool(((x >= lo - 1e-5) & (x <= hi + 1e-5)).all())


def test_unit_masks_task_aware_and_class_incremental():
    plugin = GeneratedReplayPlugin("hnet", **SMALL)
    plugin.classes = [[0, 1], [2, 3]]
    owner = torch.tensor([0, 1, 1])
    s, t = plugin.unit_masks(owner, current=[4, 5], width=6, task_aware=True)
    expect = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(s, expect) and torch.equal(t, expect)
    s, t = plugin.unit_masks(owner, current=[4, 5], width=6, task_aware=False)
    assert torch.equal(t, torch.tensor([[1, 1, 1, 1, 0, 0]] * 3, dtype=torch.bool))
    assert torch.equal(s, torch.tensor([[1, 1, 1, 1, 1, 1]] * 3, dtype=torch.bool))


class Spy(GeneratedReplayPlugin):
    """Checks, at the first replaying step, the loss the plugin mixed in against the distillation loss computed
    directly: each replayed input through its own experience's task label and head, on that experience's classes."""

    checked = 0

    def replay_inputs(self, device=None):
        self.last = super().replay_inputs(device)
        return self.last

    def before_backward(self, strategy, *args, **kwargs):
        before = strategy.loss.detach().clone()
        super().before_backward(strategy, *args, **kwargs)
        if self._teacher is None or self.checked:
            return
        x, owner = self.last
        labels = torch.tensor(self.task_labels)[owner]
        with torch.no_grad():
            t_out, s_out = self._teacher(x, labels), strategy.model(x, labels)
        width = min(t_out.shape[1], s_out.shape[1])
        mask = torch.zeros(len(x), width, dtype=torch.bool)
        for i, j in enumerate(owner.tolist()):
            mask[i, self.classes[j]] = True
        direct = masked_distillation_loss(s_out[:, :width], t_out[:, :width], mask, mask, self.temperature)
        w = self.replay_weight
        assert float(strategy.loss.detach()) == pytest.approx((1 - w) * float(before) + w * float(direct), rel=1e-5)
        assert float(direct) > 0
        self.checked += 1


def test_multi_head_model_replays_each_input_through_its_own_task_label():
    bench = stream(task_labels=True)
    plugin = Spy("lstm_net_grow", replay_iterations=50, replay_batch_size=8, seed=0, **SMALL)
    naive(MultiHead(), [plugin], epochs=1).train(bench.train_stream)
    assert plugin.checked == 1 and plugin.task_labels == [0, 1]


def test_checkpoint_round_trip_and_refusals(tmp_path):
    bench = stream(task_labels=False)
    plugin = GeneratedReplayPlugin("lstm_net_grow", replay_iterations=30, seed=3, **SMALL)
    naive(classifier(), [plugin], epochs=1).train(bench.train_stream[0])
    plugin.save(tmp_path / "replay.pt")
    other = GeneratedReplayPlugin("lstm_net_grow", replay_iterations=30, seed=3, **SMALL)
    other.load(tmp_path / "replay.pt")
    assert torch.equal(plugin.replay_inputs()[0], other.replay_inputs()[0])
    with pytest.raises(CheckpointError, match="other settings or another seed"):
        GeneratedReplayPlugin("lstm_net_grow", replay_iterations=30, seed=4, **SMALL).load(tmp_path / "replay.pt")
    raw = bytearray((tmp_path / "replay.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        other.load(tmp_path / "bad.pt")


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown replay method 'ewc'"):
        GeneratedReplayPlugin("ewc")
    with pytest.raises(ValueError, match="replay_iterations must be a positive"):
        GeneratedReplayPlugin("hnet", replay_iterations=0)
    with pytest.raises(ValueError, match="hnet_kwargs takes hidden_size and chunk_size"):
        GeneratedReplayPlugin("hnet", hnet_kwargs={"beta": 1})
