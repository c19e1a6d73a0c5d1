import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hypercl import ChunkPlan

sizes = st.one_of(st.integers(1, 5000), st.sampled_from([2, 3, 5, 7, 11, 13, 97, 101, 4099]))


@settings(max_examples=150, deadline=None)
@given(n=sizes, c=sizes, lead=st.lists(st.integers(1, 3), max_size=2))
def test_round_trip_exact(n, c, lead):
    plan = ChunkPlan(n, c)
    assert plan.n_chunks == -(-n // c)
    flat = torch.randn(*lead, n, dtype=torch.float64)
    chunks = plan.split(flat)
    assert chunks.shape == (*lead, plan.n_chunks, c)
    # padding is zero and the data is in order
    assert torch.equal(chunks.reshape(*lead, -1)[..., n:], torch.zeros(*lead, plan.padding, dtype=torch.float64))
    assert torch.equal(plan.join(chunks), flat)


def test_edge_cases():
    assert ChunkPlan(5, 1).n_chunks == 5
    assert ChunkPlan(5, 7).n_chunks == 1 and ChunkPlan(5, 7).padding == 2
    assert ChunkPlan(7, 7).padding == 0


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True, None])
def test_bad_chunk_size(bad):
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkPlan(10, bad)


def test_wrong_shapes():
    plan = ChunkPlan(10, 4)
    with pytest.raises(ValueError, match="num_params=10"):
        plan.split(torch.zeros(9))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        plan.join(torch.zeros(2, 4))
