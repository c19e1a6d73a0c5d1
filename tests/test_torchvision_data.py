"""torchvision datasets (FakeData, ImageFolder, MNIST) as Split / Permuted benchmarks, read lazily with their
transforms (real torchvision, no mocks)."""

import pytest
import torch

import hypercl
from hypercl.data.datasets import DatasetView, dataset_targets, permuted_dataset, split_dataset
from hypercl.data.integrity import md5sum
from hypercl.data.mnist import MNIST_MD5
from hypercl.data.paths import resolve_data_root

tv = pytest.importorskip("torchvision", reason='torchvision is not installed: pip install "hypercl[vision]"')
T = tv.transforms


def fake(n, seed, targets=True):
    """FakeData with its (seeded) labels as ``targets``, or without (then every sample is read once for its label)."""
    ds = tv.datasets.FakeData(size=n, image_size=(1, 6, 6), num_classes=4, transform=T.ToTensor(), random_offset=seed)
    if targets:
        ds.targets = [ds[i][1] for i in range(n)]
    return ds


def test_split_fakedata_reads_through_the_transform_with_local_labels():
    train, test = fake(40, 0, targets=False), fake(16, 100)
    bench = split_dataset(train, test, classes_per_task=2)
    assert bench.num_tasks == 2 and bench.input_dim == 36
    y_all = dataset_targets(train)
    for t, task in enumerate(bench):
        classes = torch.tensor([2 * t, 2 * t + 1])
        idx = torch.nonzero(torch.isin(y_all, classes)).flatten()
        assert isinstance(task.x_train, DatasetView) and len(task.x_train) == len(idx)
        pick = torch.tensor([len(idx) - 1, 0])
        direct = torch.stack([train[int(i)][0] for i in idx[pick]])
        assert torch.equal(task.x_train[pick], direct)  # same pixels as the dataset gives, transform applied
        assert torch.equal(task.y_train, y_all[idx] - 2 * t)


def test_permuted_dataset_equals_the_permuted_samples_and_trains():
    train, test = fake(24, 0), fake(12, 100)
    bench = permuted_dataset(train, test, num_tasks=2, seed=3)
    perm = hypercl.data.task_permutation(3, 1, 36)
    assert torch.equal(bench[0].x_test[torch.tensor([5])], test[5][0].reshape(1, -1))  # task 0: identity
    assert torch.equal(bench[1].x_test[torch.tensor([5])], test[5][0].reshape(1, -1)[:, perm])
    model = torch.nn.Sequential(torch.nn.Linear(36, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(model, generator="chunked_mlp"), strategy="hnet",
                                       batch_size=8)
    for t, task in enumerate(bench):
        learner.fit_task(t, task, iterations=3)
    res = learner.evaluate(bench, scenarios=["cl1", "cl3"])
    assert set(res["cl1"]["accuracy"]) == {0, 1}


def test_image_folder_split(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for c in ("a", "b", "c", "d"):
        (tmp_path / c).mkdir()
        for i in range(3):
            px = (torch.rand(5, 5, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(px).save(tmp_path / c / f"{i}.png")
    ds = tv.datasets.ImageFolder(str(tmp_path), transform=T.ToTensor())
    bench = split_dataset(ds, ds, classes_per_task=2, class_order=[3, 2, 1, 0])
    assert bench[0].name.endswith("3-2")
    assert torch.equal(bench[0].y_train, torch.tensor([1, 1, 1, 0, 0, 0]))  # class 2 -> local 1, class 3 -> local 0
    assert torch.equal(bench[0].x_train[torch.tensor([3])], ds[9][0].unsqueeze(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(75, 2))
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(model, generator="lstm"), strategy="grow", batch_size=4)
    learner.fit_task(0, bench[0], iterations=2)


def _real_mnist_root():
    root = resolve_data_root()
    if not all((root / "MNIST" / "raw" / f"{stem}.gz").is_file() for stem in _MNIST_STEMS):
        pytest.skip(f"no MNIST/raw/*.gz under the library's data root {root} (set HYPERCL_DATA or --data-root)")
    return root


_MNIST_STEMS = tuple(name[: -len(".gz")] for name in MNIST_MD5 if name.endswith(".gz"))


def test_torchvision_mnist_split_from_the_library_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _real_mnist_root()
    tv_root = hypercl.data.torchvision_mnist_root(root, download=False)
    test = tv.datasets.MNIST(str(tv_root), train=False, download=False, transform=T.ToTensor())
    bench = split_dataset(test, test, classes_per_task=2)
    assert bench.num_tasks == 5
    ours = hypercl.data.SplitMNIST(root, download=False, max_test_per_task=50)
    # the same images as hypercl's own reader, in the same order (ToTensor scales by 1/255 as ours does)
    assert torch.equal(bench[2].x_test[torch.arange(50)].reshape(50, -1), ours[2].x_test)
    assert torch.equal(bench[2].y_test[:50], ours[2].y_test)


def test_torchvision_root_from_a_read_only_gz_folder_decompresses_into_the_cache(tmp_path, monkeypatch):
    """A data folder holding only the .gz files (torchvision would decompress next to them) is never written to:
    the decompressed copies go to the cache, are reused, and a damaged copy is made again."""
    source = _real_mnist_root() / "MNIST" / "raw"
    data = tmp_path / "data"
    (data / "MNIST" / "raw").mkdir(parents=True)
    for stem in _MNIST_STEMS:
        (data / "MNIST" / "raw" / f"{stem}.gz").symlink_to(source / f"{stem}.gz")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = sorted(p.name for p in (data / "MNIST" / "raw").iterdir())
    tv_root = hypercl.data.torchvision_mnist_root(data, download=False)
    assert tv_root == (tmp_path / "cache" / "hypercl" / "torchvision").absolute()
    assert sorted(p.name for p in (data / "MNIST" / "raw").iterdir()) == before  # the data folder is untouched
    assert sorted(p.name for p in (tv_root / "MNIST" / "raw").iterdir()) == sorted(_MNIST_STEMS)  # no temp files
    labels = tv_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + b"\x09")  # damage one byte of the copy
    assert hypercl.data.torchvision_mnist_root(data, download=False) == tv_root
    assert md5sum(labels) == MNIST_MD5["t10k-labels-idx1-ubyte"]  # made again
    test = tv.datasets.MNIST(str(tv_root), train=False, download=False)
    assert torch.equal(test.targets, hypercl.data.load_mnist(data, download=False).test_labels)
    # a data folder that holds the decompressed files is used as it is
    assert hypercl.data.torchvision_mnist_root(tv_root, download=False) == tv_root


def test_bad_dataset_targets_are_one_clear_error():
    class Floats(torch.utils.data.Dataset):
        targets = [0.5, 1.5]

        def __len__(self):
            return 2

    with pytest.raises(ValueError, match="one integer class per sample"):
        split_dataset(Floats(), Floats())


def test_dataloader_with_workers_feeds_fit_task_and_evaluate():
    """What a torchvision user tries first: a DataLoader with num_workers over a dataset with a transform."""
    ds = tv.datasets.FakeData(size=32, image_size=(1, 6, 6), num_classes=2, transform=T.ToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 2))
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(model, generator="chunked_mlp"), strategy="hnet")
    log = learner.fit_task(0, loader, epochs=1)
    assert log["steps"] == 4  # one pass of the loader: 32 / 8 batches
    res = learner.evaluate([torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2)], scenarios=["cl1"])
    assert 0.0 <= res["cl1"]["accuracy"][0] <= 1.0
