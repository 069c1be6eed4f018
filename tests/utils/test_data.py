"""distnn.utils.data: collation, samplers, datasets, random_split and the
DataLoader (batching, len, shuffling semantics, argument errors, workers),
side by side with torch.utils.data where it is installed."""

import collections

import numpy as np
import pytest

import distnn
from distnn.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset,
                               RandomSampler, SequentialSampler, Subset, SubsetRandomSampler,
                               TensorDataset, default_collate, default_convert, get_worker_info,
                               random_split)

try:
    import torch
    import torch.utils.data as tud
except ImportError:
    torch = tud = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (test oracle) not installed")

Point = collections.namedtuple("Point", "x y")


def plain(x):
    """A library-neutral description of a (collated) structure, for comparing with torch."""
    if isinstance(x, distnn.Tensor) or (torch is not None and isinstance(x, torch.Tensor)):
        return ("tensor", str(x.dtype).replace("torch.", ""), tuple(x.shape), np.asarray(x).tolist())
    if isinstance(x, dict):
        return (type(x).__name__, {k: plain(v) for k, v in x.items()})
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__, [plain(v) for v in x])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [plain(v) for v in x])
    if isinstance(x, np.ndarray):
        return ("ndarray", str(x.dtype), x.tolist())
    return (type(x).__name__, x)


def to_lib(x, lib):
    """Rebuild a sample with tensors of ``lib``."""
    if isinstance(x, distnn.Tensor):
        return x if lib is distnn else torch.from_numpy(x.numpy().copy())
    if isinstance(x, dict):
        return type(x)((k, to_lib(v, lib)) for k, v in x.items())
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(to_lib(v, lib) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(to_lib(v, lib) for v in x)
    return x


SAMPLES = {
    "floats": [1.5, 2.0, -3.25],
    "ints": [1, 2, 3],
    "bools": [True, False],
    "strings": ["a", "bc"],
    "np_scalars_f32": [np.float32(1.5), np.float32(2)],
    "np_scalars_i32": [np.int32(1), np.int32(7)],
    "np_arrays": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), np.float32)],
    "tensors": [distnn.tensor([[1.0, 2.0]]), distnn.tensor([[3.0, 4.0]])],
    "int_tensors": [distnn.tensor([1, 2]), distnn.tensor([3, 4])],
    "tuple_samples": [(distnn.tensor([1.0]), 0), (distnn.tensor([2.0]), 1)],
    "dict_samples": [{"x": distnn.tensor([1.0, 2.0]), "y": 1, "name": "a"},
                     {"x": distnn.tensor([3.0, 4.0]), "y": 2, "name": "b"}],
    "nested": [{"a": [1.0, (2, "s")], "b": {"c": np.array([1, 2])}},
               {"a": [3.0, (4, "t")], "b": {"c": np.array([3, 4])}}],
    "ordered_dict": [collections.OrderedDict(b=1, a=2.0), collections.OrderedDict(b=3, a=4.0)],
    "namedtuple": [Point(1.0, distnn.tensor([1])), Point(2.0, distnn.tensor([2]))],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_default_collate_structure_types_and_values(name):
    batch = SAMPLES[name]
    ours = plain(default_collate(batch))
    expected = {
        "floats": ("tensor", "float64", (3,), [1.5, 2.0, -3.25]),
        "ints": ("tensor", "int64", (3,), [1, 2, 3]),
        "bools": ("tensor", "bool", (2,), [True, False]),
        "strings": ("list", [("str", "a"), ("str", "bc")]),
    }
    if name in expected:
        assert ours == expected[name]
    if torch is not None:
        assert ours == plain(tud.default_collate(to_lib(batch, torch)))


@pytest.mark.parametrize("name", sorted(SAMPLES))
@requires_torch
def test_default_convert_matches_torch(name):
    sample = SAMPLES[name][0]
    assert plain(default_convert(sample)) == plain(tud.default_convert(to_lib(sample, torch)))


@pytest.mark.parametrize("batch, error, match", [
    ([distnn.zeros(2), distnn.zeros(3)], RuntimeError, r"equal size, but got \[2\] at entry 0 and \[3\] at entry 1"),
    ([np.zeros(2), np.zeros(3)], RuntimeError, r"equal size"),
    ([[1, 2], [1, 2, 3]], RuntimeError, r"equal size: Expect: 2 \(entry 0\), Actual: 3 at entry 1"),
    ([object(), object()], TypeError, r"found <class 'object'>"),
    ([np.array(["a"]), np.array(["b"])], TypeError, r"found <U1"),
    ([np.zeros(2, np.uint32)], TypeError, r"uint32"),
    ([], ValueError, r"non-empty"),
])
def test_default_collate_errors(batch, error, match):
    with pytest.raises(error, match=match):
        default_collate(batch)


# --- samplers ---------------------------------------------------------------------------

def test_sequential_sampler():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    assert len(SequentialSampler(range(5))) == 5


@pytest.mark.parametrize("n, num_samples", [(7, None), (7, 3), (5, 12)])
def test_random_sampler_without_replacement_is_permutations(n, num_samples):
    idx = list(RandomSampler(range(n), num_samples=num_samples))
    total = n if num_samples is None else num_samples
    assert len(idx) == total == len(RandomSampler(range(n), num_samples=num_samples))
    for start in range(0, total - total % n, n):  # each full block is a permutation
        assert sorted(idx[start:start + n]) == list(range(n))
    assert len(set(idx[total - total % n:])) == total % n


def test_random_sampler_with_replacement_draws_in_range():
    idx = list(RandomSampler(range(4), replacement=True, num_samples=1000))
    assert len(idx) == 1000 and set(idx) == {0, 1, 2, 3}


def test_subset_random_sampler_permutes_given_indices():
    g = distnn.Generator().manual_seed(3)
    idx = list(SubsetRandomSampler([10, 20, 30, 40], generator=g))
    assert sorted(idx) == [10, 20, 30, 40]
    assert idx == list(SubsetRandomSampler([10, 20, 30, 40], generator=distnn.Generator().manual_seed(3)))


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (9, 3, True),
                                                      (2, 5, False), (2, 5, True)])
def test_batch_sampler(n, batch_size, drop_last):
    ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    expected = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    if drop_last:
        expected = [b for b in expected if len(b) == batch_size]
    assert list(ours) == expected and len(ours) == len(expected)


SAMPLER_ERRORS = [
    ("RandomSampler", (range(3),), {"replacement": 1}, TypeError),
    ("RandomSampler", (range(3),), {"num_samples": 0}, ValueError),
    ("RandomSampler", (range(3),), {"num_samples": 2.5}, ValueError),
    ("BatchSampler", (range(3), 0, False), {}, ValueError),
    ("BatchSampler", (range(3), True, False), {}, ValueError),
    ("BatchSampler", (range(3), 2, "no"), {}, ValueError),
]


@pytest.mark.parametrize("cls, args, kwargs, error", SAMPLER_ERRORS)
def test_sampler_argument_errors_match_torch(cls, args, kwargs, error):
    import distnn.utils.data as ours
    with pytest.raises(error) as info:
        getattr(ours, cls)(*args, **kwargs)
    if tud is not None:
        with pytest.raises(error) as torch_info:
            getattr(tud, cls)(*args, **kwargs)
        assert str(info.value) == str(torch_info.value)


# --- datasets -------------------------------------------------------------------------

def test_tensor_dataset_items_and_size_mismatch():
    x, y = distnn.arange(6).reshape(3, 2), distnn.tensor([7, 8, 9])
    ds = TensorDataset(x, y)
    assert len(ds) == 3
    a, b = ds[1]
    assert a.tolist() == [2, 3] and b.item() == 8
    with pytest.raises(ValueError, match=r"Expect: equal size\(0\), Actual: \[3, 2\]"):
        TensorDataset(x, distnn.zeros(2))


def test_subset_and_concat_dataset():
    ds = ConcatDataset([range(3), range(10, 14)])
    assert len(ds) == 7 and [ds[i] for i in range(7)] == [0, 1, 2, 10, 11, 12, 13]
    assert ds[-1] == 13 and ds.cumulative_sizes == [3, 7]
    with pytest.raises(ValueError, match="should not exceed dataset length"):
        ds[-8]
    with pytest.raises(IndexError, match="out of range"):
        ds[7]
    sub = Subset(ds, [6, 0])
    assert len(sub) == 2 and sub[0] == 13 and sub.__getitems__([0, 1]) == [13, 0]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])


@pytest.mark.parametrize("n, lengths", [(10, [3, 7]), (10, [0.3, 0.7]), (11, [0.5, 0.25, 0.25]),
                                        (7, [0.1, 0.9]), (30, [0.3, 0.3, 0.4])])
def test_random_split_lengths_and_disjointness(n, lengths):
    parts = random_split(range(n), lengths, generator=distnn.Generator().manual_seed(0))
    sizes = [len(p) for p in parts]
    if tud is not None:
        with pytest.warns(UserWarning) if 0 in sizes else _no_warning():
            expected = [len(p) for p in tud.random_split(range(n), lengths, torch.Generator().manual_seed(0))]
        assert sizes == expected
    assert sum(sizes) == n
    assert sorted(i for p in parts for i in p) == list(range(n))


def _no_warning():
    import contextlib
    return contextlib.nullcontext()


def test_random_split_reproducible_with_generator_and_seed():
    a = random_split(range(20), [5, 15], generator=distnn.Generator().manual_seed(1))
    b = random_split(range(20), [5, 15], generator=distnn.Generator().manual_seed(1))
    assert [list(p) for p in a] == [list(p) for p in b]
    distnn.manual_seed(4)
    c = random_split(range(20), [0.5, 0.5])
    distnn.manual_seed(4)
    assert [list(p) for p in c] == [list(p) for p in random_split(range(20), [0.5, 0.5])]


@pytest.mark.parametrize("lengths, match", [([3, 3], r"Sum of input lengths .* Expect: 10, Actual: 6"),
                                            ([1.5, -0.5], "Fraction at index 0 is not between 0 and 1"),
                                            ([-1, 11], "non-negative integer")])
def test_random_split_errors(lengths, match):
    with pytest.raises(ValueError, match=match):
        random_split(range(10), lengths)


# --- DataLoader -----------------------------------------------------------------------

def epoch(loader):
    return [x.tolist() for (x,) in loader]


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (10, 5, True),
                                                      (4, 8, False), (4, 8, True), (1, 1, False)])
def test_dataloader_batching_and_len(n, batch_size, drop_last):
    loader = DataLoader(TensorDataset(distnn.arange(n)), batch_size=batch_size, drop_last=drop_last)
    batches = epoch(loader)
    flat = [i for b in batches for i in b]
    assert len(batches) == len(loader)
    assert flat == list(range(len(flat))) and all(len(b) == batch_size for b in batches[:-1])
    if tud is not None:
        torch_loader = tud.DataLoader(tud.TensorDataset(torch.arange(n)), batch_size=batch_size,
                                      drop_last=drop_last)
        assert len(loader) == len(torch_loader)
        assert batches == [x.tolist() for (x,) in torch_loader]


def test_dataloader_batch_dtypes_and_structure():
    x = distnn.randn(5, 2)
    y = distnn.tensor([0, 1, 2, 3, 4])
    xb, yb = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    assert xb.shape == (4, 2) and xb.dtype == distnn.float32 and yb.dtype == distnn.int64
    np.testing.assert_array_equal(xb.numpy(), x.numpy()[:4])


LIBS = ["distnn", "torch"]


def _lib(name):
    if name == "torch" and torch is None:
        pytest.skip("PyTorch (test oracle) not installed")
    return (distnn, distnn.utils.data) if name == "distnn" else (torch, tud)


@pytest.mark.parametrize("libname", LIBS)
def test_shuffle_semantics_with_manual_seed(libname):
    """The contract PyTorch users rely on, checked on both libraries: reseeding
    replays the same epochs, consecutive epochs differ, each epoch is a permutation."""
    lib, data = _lib(libname)
    loader = data.DataLoader(data.TensorDataset(lib.arange(50)), batch_size=8, shuffle=True)
    lib.manual_seed(7)
    first, second = epoch(loader), epoch(loader)
    lib.manual_seed(7)
    assert epoch(loader) == first and epoch(loader) == second
    assert first != second
    assert sorted(i for b in first for i in b) == list(range(50))


@pytest.mark.parametrize("libname", LIBS)
def test_shuffle_with_generator_leaves_default_generator_alone(libname):
    lib, data = _lib(libname)
    ds = data.TensorDataset(lib.arange(30))
    lib.manual_seed(0)
    untouched = lib.rand(3).tolist()
    lib.manual_seed(0)
    orders = [epoch(data.DataLoader(ds, batch_size=4, shuffle=True,
                                    generator=lib.Generator().manual_seed(11))) for _ in range(2)]
    assert orders[0] == orders[1]
    assert lib.rand(3).tolist() == untouched  # the default generator was not consumed
    lib.manual_seed(0)
    epoch(data.DataLoader(ds, batch_size=4, shuffle=True))
    assert lib.rand(3).tolist() != untouched  # without a generator, it is


@pytest.mark.parametrize("libname", LIBS)
def test_random_sampler_with_generator_continues_across_epochs(libname):
    lib, data = _lib(libname)
    g = lib.Generator().manual_seed(5)
    sampler = data.RandomSampler(range(20), generator=g)
    a, b = list(sampler), list(sampler)
    assert a != b
    g.manual_seed(5)
    assert list(sampler) == a


def test_dataloader_fast_path_matches_per_sample_collate():
    x, y = distnn.randn(9, 3), distnn.arange(9)
    ds = TensorDataset(x, y)

    class PerSample(TensorDataset):  # overriding __getitem__ must disable the batched path
        def __getitem__(self, i):
            a, b = super().__getitem__(i)
            return a * 2, b

    distnn.manual_seed(3)
    fast = [(a.numpy(), b.numpy()) for a, b in DataLoader(Subset(ds, list(range(8, -1, -1))), batch_size=4)]
    slow = [default_collate([ds[i] for i in range(8, -1, -1)][k:k + 4]) for k in range(0, 9, 4)]
    for (a, b), (sa, sb) in zip(fast, slow):
        np.testing.assert_array_equal(a, sa.numpy())
        np.testing.assert_array_equal(b, sb.numpy())
    doubled = next(iter(DataLoader(PerSample(x, y), batch_size=9)))[0]
    np.testing.assert_allclose(doubled.numpy(), 2 * x.numpy())


def test_dataloader_batch_size_none_and_custom_collate():
    ds = [np.array([1, 2]), np.array([3, 4])]
    out = list(DataLoader(ds, batch_size=None))
    assert [o.tolist() for o in out] == [[1, 2], [3, 4]] and isinstance(out[0], distnn.Tensor)
    assert list(DataLoader(range(5), batch_size=2, collate_fn=sum)) == [1, 5, 4]
    bs = BatchSampler(SequentialSampler(range(5)), 4, False)
    assert [b.tolist() for b in DataLoader(range(5), batch_sampler=bs)] == [[0, 1, 2, 3], [4]]


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (info.id, info.num_workers) if info else (0, 1)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset(drop_last):
    loader = DataLoader(Stream(7), batch_size=3, drop_last=drop_last)
    batches = [b.tolist() for b in loader]
    assert batches == ([[0, 1, 2], [3, 4, 5]] if drop_last else [[0, 1, 2], [3, 4, 5], [6]])
    assert len(loader) == len(batches)


LOADER_ERRORS = [
    (dict(num_workers=-1), ValueError),
    (dict(timeout=-1), ValueError),
    (dict(prefetch_factor=2), ValueError),
    (dict(persistent_workers=True), ValueError),
    (dict(sampler="S", shuffle=True), ValueError),
    (dict(batch_sampler=[[0]], batch_size=2), ValueError),
    (dict(batch_sampler=[[0]], drop_last=True), ValueError),
    (dict(batch_sampler=[[0]], shuffle=True), ValueError),
    (dict(batch_size=None, drop_last=True), ValueError),
    (dict(multiprocessing_context="spawn"), ValueError),
    (dict(num_workers=1, multiprocessing_context="nope"), ValueError),
    (dict(batch_size=0), ValueError),
]


@pytest.mark.parametrize("kwargs, error", LOADER_ERRORS)
def test_dataloader_argument_errors_match_torch(kwargs, error):
    with pytest.raises(error) as info:
        DataLoader(range(4), **kwargs)
    if tud is not None:
        with pytest.raises(error) as torch_info:
            tud.DataLoader(range(4), **kwargs)
        assert str(info.value) == str(torch_info.value)


@pytest.mark.parametrize("kwargs", [dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])])
def test_iterable_dataset_rejects_sampling_options(kwargs):
    with pytest.raises(ValueError, match="DataLoader with IterableDataset: expected unspecified"):
        DataLoader(Stream(3), **kwargs)


@pytest.mark.skipif(distnn.cuda.is_available(), reason="the warning is for machines without a GPU")
def test_pin_memory_without_gpu_warns_like_torch():
    with pytest.warns(UserWarning, match="'pin_memory' argument is set as true but no accelerator is found"):
        assert epoch(DataLoader(TensorDataset(distnn.arange(2)), pin_memory=True)) == [[0], [1]]


def test_dataloader_attributes_frozen_after_init():
    loader = DataLoader(range(3))
    with pytest.raises(ValueError, match="batch_size attribute should not be set after DataLoader is initialized"):
        loader.batch_size = 2


# --- worker processes -----------------------------------------------------------------

class WhoLoads(Dataset):
    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"no sample {i}")
        info = get_worker_info()
        return distnn.tensor([i, -1 if info is None else info.id])


@pytest.mark.parametrize("num_workers", [1, 3])
def test_workers_return_batches_in_order(num_workers):
    loader = DataLoader(WhoLoads(11), batch_size=2, num_workers=num_workers)
    batches = list(loader)
    assert [b[:, 0].tolist() for b in batches] == [list(range(i, min(i + 2, 11))) for i in range(0, 11, 2)]
    assert {int(w) for b in batches for w in b[:, 1].tolist()} == set(range(num_workers))


def test_worker_error_is_raised_with_its_type_and_traceback():
    with pytest.raises(KeyError, match=r"(?s)Caught KeyError in DataLoader worker process \d.*no sample 5"):
        list(DataLoader(WhoLoads(8, fail_at=5), batch_size=2, num_workers=2))


def test_worker_shuffle_is_reproducible_and_iterable_is_sharded():
    loader = DataLoader(WhoLoads(12), batch_size=3, shuffle=True, num_workers=2)
    distnn.manual_seed(9)
    a = [b[:, 0].tolist() for b in loader]
    distnn.manual_seed(9)
    assert [b[:, 0].tolist() for b in loader] == a
    distnn.manual_seed(9)
    assert [b[:, 0].tolist() for b in DataLoader(WhoLoads(12), batch_size=3, shuffle=True)] == a
    shards = [b.tolist() for b in DataLoader(Stream(7), batch_size=2, num_workers=2)]
    assert sorted(i for b in shards for i in b) == list(range(7))


class Tagged(Dataset):
    tag = "main"

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 3 and self.tag == "die":
            import os
            os._exit(3)
        return self.tag


def _tag_worker(worker_id):
    get_worker_info().dataset.tag = f"worker{worker_id}"


def test_persistent_workers_and_worker_init_fn():
    loader = DataLoader(Tagged(), batch_size=2, num_workers=2, persistent_workers=True,
                        worker_init_fn=_tag_worker)
    first = list(loader)
    assert first == [["worker0", "worker0"], ["worker1", "worker1"]]
    iterator = iter(loader)
    assert iterator is loader._iterator and list(iterator) == first
    loader._iterator._shutdown()


def test_worker_that_dies_is_reported_with_exit_code():
    ds = Tagged()
    ds.tag = "die"
    with pytest.raises(RuntimeError, match=r"DataLoader worker 1 \(pid \d+\) exited unexpectedly with exit code 3"):
        list(DataLoader(ds, batch_size=2, num_workers=2))


class Slow(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        import time
        time.sleep(0.5)
        return i


def test_worker_timeout_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.1 seconds"):
        list(DataLoader(Slow(), num_workers=1, timeout=0.1))
