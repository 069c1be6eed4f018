"""Train-step time of the seed models, distnn beside PyTorch (when importable).

    python bench/step_time.py [--repeat 30] [--threads 1] [--rounds 3] [--device cuda]

On a GPU it adds batch-1024 rows and whole steps captured into a CUDA graph and
replayed (PyTorch's recipe, run by both libraries).

Each row is one full step (forward, loss, zero_grad, backward, update) with
one BLAS thread by default; the table shows median milliseconds. Each library
runs ``--rounds`` times in a fresh process, the rounds of the two interleaved,
so a slow spell of a shared machine hits both alike; each cell is the median
over rounds of the per-round medians.
"""

import os
import sys


def build_cases(lib, args):
    """(name, make_step) per model, written once against the shared torch-style API."""
    import models
    nn, device = lib.nn, args.device

    def classifier_step(model, batch, in_shape):
        model.to(device)
        x, y = lib.randn(batch, *in_shape, device=device), lib.randint(0, 10, (batch,), device=device)
        opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        return step

    def graphed_classifier_step(model, batch, in_shape):
        """PyTorch's whole-step CUDA-graph recipe: warm up on a side stream, capture
        forward, backward and the SGD step once, then each step is one replay."""
        model.to(device)
        x, y = lib.randn(batch, *in_shape, device=device), lib.randint(0, 10, (batch,), device=device)
        opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def eager():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        side = lib.cuda.Stream()
        side.wait_stream(lib.cuda.current_stream())
        with lib.cuda.stream(side):
            for _ in range(3):
                eager()
        lib.cuda.current_stream().wait_stream(side)
        graph = lib.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with lib.cuda.graph(graph):
            loss_fn(model(x), y).backward()
            opt.step()
        return graph.replay

    def two_layer_step():
        x, y = lib.randn(64, 1000, device=device), lib.randn(64, 10, device=device)
        model = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10)).to(device)
        loss_fn = nn.MSELoss(reduction="sum")

        def step():
            loss = loss_fn(model(x), y)
            model.zero_grad()
            loss.backward()
            with lib.no_grad():
                for p in model.parameters():
                    p -= 1e-4 * p.grad
        return step

    def rnn_step():
        rnn, loss_fn = models.seed_rnn(lib, 50, 20, 10).to(device), nn.MSELoss()
        batch = lib.randn(10, 50, device=device)
        hidden0, target = lib.zeros(10, 20, device=device), lib.zeros(10, 10, device=device)

        def step():
            rnn.zero_grad()
            hidden, loss = hidden0, 0
            for _ in range(5):
                hidden, output = rnn(batch, hidden)
                loss = loss + loss_fn(output, target)
            loss.backward()
        return step

    def mlp():
        return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    gpu_rows = [
        ("ConvNet train step, batch 1024", lambda: classifier_step(models.mnist_convnet(lib), 1024, (1, 28, 28))),
        ("MLP 784-1024-1024-10, batch 1024", lambda: classifier_step(mlp(), 1024, (784,))),
        ("ConvNet step, batch 64, CUDA graph", lambda: graphed_classifier_step(models.mnist_convnet(lib), 64,
                                                                               (1, 28, 28))),
        ("MLP step, batch 1024, CUDA graph", lambda: graphed_classifier_step(mlp(), 1024, (784,))),
    ] if device == "cuda" else []
    return [
        ("ConvNet train step, batch 64", lambda: classifier_step(models.mnist_convnet(lib), 64, (1, 28, 28))),
        ("ConvNet train step, batch 256", lambda: classifier_step(models.mnist_convnet(lib), 256, (1, 28, 28))),
        ("two-layer net (seed), batch 64", two_layer_step),
        ("RNN loop (seed), 5 steps, batch 10", rnn_step),
        ("MLP 784-1024-1024-10, batch 256", lambda: classifier_step(mlp(), 256, (784,))),
    ] + gpu_rows


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    harness.main(os.path.abspath(__file__), __doc__, build_cases)
