"""distnn.cuda graphs and distnn's cuBLAS GEMMs on a real GPU: captured work replays
what eager runs computed, a whole training step (forward, backward, SGD) captures
(which also proves it makes no host synchronisation) and replays step for step like
eager training, and what a graph cannot replay raises. Skipped without a GPU; the
CPU-side guards are tested at the end without one."""

import numpy as np
import pytest

import distnn
from distnn import cublas, nn

gpu = pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")


def _cupy():
    from distnn import backend
    return backend._import_cupy()


@gpu
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((64, 320), (320, 50)), ((2, 3, 4), (4, 5)),
                                    ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((7,), (7, 3)), ((7,), (7,))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transpose", [False, True])
def test_gemm_matches_cupy(shapes, dtype, transpose):
    cp = _cupy()
    rng = np.random.default_rng(0)
    a, b = (cp.asarray(rng.standard_normal(s).astype(dtype)) for s in shapes)
    if transpose and a.ndim >= 2:
        a = cp.ascontiguousarray(cp.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    expected = cp.matmul(a, b)
    got = cublas.matmul(a, b)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(cp.asnumpy(got), cp.asnumpy(expected), rtol=tol, atol=tol)


@gpu
def test_capture_replays_on_new_inputs():
    x = distnn.randn(32, 16, device="cuda")
    w = distnn.randn(16, 8, device="cuda")
    y = (x @ w).relu().sum(1)  # warm up: kernels compile outside the capture
    g = distnn.cuda.CUDAGraph()
    with distnn.cuda.graph(g):
        y = (x @ w).relu().sum(1)
    for _ in range(3):
        x.copy_(distnn.randn(32, 16, device="cuda"))
        g.replay()
        expected = (x @ w).relu().sum(1)
        np.testing.assert_allclose(y.cpu().numpy(), expected.cpu().numpy(), rtol=1e-6, atol=1e-6)


def _convnet():
    return nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 12 * 12, 10))


@gpu
@pytest.mark.parametrize("make_model", [_convnet, lambda: nn.Sequential(nn.Linear(20, 64), nn.ReLU(),
                                                                        nn.Linear(64, 10))])
def test_whole_training_step_replays_like_eager(make_model):
    """PyTorch's whole-network recipe: warm up on a side stream, zero grads to None,
    capture forward + backward + step, then feed the static tensors and replay."""
    distnn.manual_seed(0)
    eager, graphed = make_model().to("cuda"), make_model().to("cuda")
    graphed.load_state_dict(eager.state_dict())
    shape = (16, 1, 28, 28) if isinstance(eager[0], nn.Conv2d) else (16, 20)
    batches = [(distnn.randn(*shape, device="cuda"), distnn.randint(0, 10, (16,), device="cuda"))
               for _ in range(8)]
    loss_fn = nn.CrossEntropyLoss()
    opts = [distnn.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
            for m in (eager, graphed)]

    def step(model, opt, x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    static_x, static_y = batches[0][0].clone(), batches[0][1].clone()
    side = distnn.cuda.Stream()
    side.wait_stream(distnn.cuda.current_stream())
    with distnn.cuda.stream(side):
        for x, y in batches[:3]:
            step(eager, opts[0], x, y)
            step(graphed, opts[1], x, y)
    distnn.cuda.current_stream().wait_stream(side)
    g = distnn.cuda.CUDAGraph()
    opts[1].zero_grad(set_to_none=True)
    with distnn.cuda.graph(g):
        static_loss = loss_fn(graphed(static_x), static_y)
        static_loss.backward()
        opts[1].step()
    # the capture ran nothing: the graphed model is still where the warm-up left it
    for x, y in batches[3:]:
        loss = step(eager, opts[0], x, y)
        static_x.copy_(x)
        static_y.copy_(y)
        g.replay()
        assert abs(static_loss.item() - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        np.testing.assert_allclose(b.cpu().numpy(), a.cpu().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


@gpu
def test_host_sync_inside_capture_raises_and_leaves_the_gpu_usable():
    x = distnn.randn(8, device="cuda")
    (x * 2).sum()
    g = distnn.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="capture"):
        with distnn.cuda.graph(g):
            (x * 2).sum().item()
    assert not distnn.cuda.is_current_stream_capturing()
    assert float((x * 2).sum().item()) == pytest.approx(float(x.cpu().numpy().sum() * 2), rel=1e-5)
    with pytest.raises(RuntimeError, match="nothing has been captured"):
        g.replay()


@gpu
@pytest.mark.parametrize("work", ["dropout", "host tensor"])
def test_what_a_graph_cannot_replay_raises(work):
    x = distnn.randn(8, 8, device="cuda")
    g = distnn.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="CUDA graph capture"):
        with distnn.cuda.graph(g):
            if work == "dropout":
                nn.functional.dropout(x, 0.5, training=True)
            else:
                x + distnn.tensor(np.ones((8, 8), np.float32)).to("cuda")


@gpu
def test_adam_step_refuses_capture():
    p = nn.Parameter(distnn.randn(4, device="cuda"))
    opt = distnn.optim.Adam([p])
    p.grad = distnn.ones(4, device="cuda")
    opt.step()
    with pytest.raises(RuntimeError, match="Adam"):
        with distnn.cuda.graph(distnn.cuda.CUDAGraph()):
            opt.step()


@gpu
def test_make_graphed_callables_matches_eager_and_guards_its_inputs():
    distnn.manual_seed(0)
    eager = nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 4)).to("cuda")
    module = nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 4)).to("cuda")
    module.load_state_dict(eager.state_dict())
    sample = distnn.randn(6, 12, device="cuda", requires_grad=True)
    graphed = distnn.cuda.make_graphed_callables(module, (sample,))
    assert graphed is module
    for _ in range(3):
        x = distnn.randn(6, 12, device="cuda")
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_a, out_b = eager(xa), graphed(xb)
        np.testing.assert_allclose(out_b.detach().cpu().numpy(), out_a.detach().cpu().numpy(), rtol=1e-6, atol=1e-6)
        (out_a * out_a).sum().backward()
        (out_b * out_b).sum().backward()
        np.testing.assert_allclose(xb.grad.cpu().numpy(), xa.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    for pa, pb in zip(eager.parameters(), module.parameters()):
        np.testing.assert_allclose(pb.grad.cpu().numpy(), pa.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match=r"captured with shape \(6, 12\)"):
        graphed(distnn.randn(5, 12, device="cuda", requires_grad=True))
    with pytest.raises(RuntimeError, match="requires_grad=True"):
        graphed(distnn.randn(6, 12, device="cuda"))
    with pytest.raises(RuntimeError, match="dtype"):
        graphed(distnn.randn(6, 12, device="cuda", dtype=distnn.float64, requires_grad=True))


def test_graph_api_without_a_capture():
    g = distnn.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="nothing has been captured"):
        g.replay()
    with pytest.raises(RuntimeError, match="capture_end"):
        g.capture_end()
    with pytest.raises(ValueError, match="capture_error_mode"):
        g.capture_begin(capture_error_mode="strict")
    assert not distnn.cuda.is_current_stream_capturing()


def test_make_graphed_callables_wants_cuda_sample_args():
    with pytest.raises(TypeError, match="must be a CUDA Tensor"):
        distnn.cuda.make_graphed_callables(nn.Linear(2, 2), (distnn.randn(3, 2),))


@pytest.mark.parametrize("make_optimizer, capturable", [
    (lambda p: distnn.optim.SGD([p], lr=0.1, momentum=0.9), True),
    (lambda p: distnn.optim.RMSprop([p]), True),
    (lambda p: distnn.optim.Adagrad([p], lr_decay=0.1), False),
    (lambda p: distnn.optim.Adam([p]), False),
    (lambda p: distnn.optim.AdamW([p]), False),
])
def test_optimizers_whose_step_a_graph_would_freeze_refuse_capture(monkeypatch, make_optimizer, capturable):
    """Checked on the host before any GPU work: the same refusal on a machine without one."""
    from distnn import backend
    p = nn.Parameter(distnn.ones(3))
    p.grad = distnn.ones(3)
    opt = make_optimizer(p)
    monkeypatch.setattr(backend, "capturing", lambda: True)
    if capturable:
        opt.step()
        assert float(p.detach().sum()) < 3
    else:
        with pytest.raises(RuntimeError, match=type(opt).__name__ + r".step\(\) cannot be captured"):
            opt.step()
        np.testing.assert_array_equal(p.detach().numpy(), np.ones(3, np.float32))


def test_host_copies_and_gpu_random_numbers_refuse_capture(monkeypatch):
    """The host-side guards, without a GPU: during a capture nothing may cross to or
    from the GPU, and GPU random numbers (drawn on the host) are refused by name."""
    from distnn import backend, random
    monkeypatch.setattr(backend, "capturing", lambda: True)
    with pytest.raises(RuntimeError, match="random sampling on the GPU inside a CUDA graph capture"):
        random.sample("uniform", (2,), np.float32, "cuda")
    assert random.sample("uniform", (2,), np.float32, "cpu").shape == (2,)  # CPU work is not captured
    assert backend.move_to(np.ones(2), "cpu").shape == (2,)


@gpu
def test_event_times_and_orders_gpu_work():
    cp = _cupy()
    start, end = distnn.cuda.Event(enable_timing=True), distnn.cuda.Event(enable_timing=True)
    x = distnn.randn(1024, 1024, device="cuda")
    start.record()
    for _ in range(20):
        x = x @ x / 1024.0
    end.record()
    end.synchronize()
    assert end.query()
    assert start.elapsed_time(end) > 0.0
    side = distnn.cuda.Stream()
    marker = distnn.cuda.current_stream().record_event()
    side.wait_event(marker)
    with distnn.cuda.stream(side):
        y = x * 2
    side.synchronize()
    np.testing.assert_allclose(cp.asnumpy(y.data), cp.asnumpy(x.data) * 2)
    with pytest.raises(RuntimeError, match="enable_timing"):
        distnn.cuda.Event().elapsed_time(end)
    with pytest.raises(RuntimeError, match="recorded"):
        distnn.cuda.Event(enable_timing=True).elapsed_time(end)
