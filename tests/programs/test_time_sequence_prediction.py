"""pytorch/examples' time_sequence_prediction shape: sine waves generated with numpy
and written with ``torch.save`` then read back with ``torch.load`` as the example's
two scripts do, a two-LSTMCell predictor in float64 (``.double()``; its device read
from a dummy parameter) unrolled step by step and then fed its own output to
predict the future, trained with LBFGS through a closure. distnn and PyTorch from
the same weights: the same loss at every closure evaluation (so the same line
search), the same test loss per step, predictions and final parameters."""

import numpy as np

import distnn
from programs.program_check import (assert_same_curve, assert_same_state, modules, requires_torch, same_start,
                                    torch)

T, L, N, HIDDEN, STEPS, FUTURE = 20, 30, 8, 51, 2, 20


def generate_sine_wave(torch, path):
    rng = np.random.default_rng(2)
    x = np.empty((N, L), "int64")
    x[:] = np.array(range(L)) + rng.integers(-4 * T, 4 * T, N).reshape(N, 1)
    torch.save(np.sin(x / 1.0 / T).astype("float64"), open(path, "wb"))


def sequence_model(torch, nn):
    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTMCell(1, HIDDEN)
            self.lstm2 = nn.LSTMCell(HIDDEN, HIDDEN)
            self.linear = nn.Linear(HIDDEN, 1)
            self.dummy_param = nn.Parameter(torch.empty(0))

        def forward(self, input, future=0):
            outputs = []
            device = self.dummy_param.device
            h_t = torch.zeros(input.size(0), HIDDEN, dtype=torch.double).to(device)
            c_t = torch.zeros(input.size(0), HIDDEN, dtype=torch.double).to(device)
            h_t2 = torch.zeros(input.size(0), HIDDEN, dtype=torch.double).to(device)
            c_t2 = torch.zeros(input.size(0), HIDDEN, dtype=torch.double).to(device)
            for input_t in input.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            for _ in range(future):
                h_t, c_t = self.lstm1(output, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            return torch.cat(outputs, dim=1)
    return Sequence()


def train_sequence(torch, nn, F, optim, seq, data_path):
    """The example's train.py; returns (loss per closure call, test loss per step, last prediction)."""
    device = torch.device("cpu")
    data = torch.from_numpy(torch.load(data_path, weights_only=False)).to(device)
    input, target = data[3:, :-1], data[3:, 1:]
    test_input, test_target = data[:3, :-1], data[:3, 1:]
    seq = seq.to(device).double()
    criterion = nn.MSELoss().to(device)
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    losses, test_losses = [], []
    for _ in range(STEPS):
        def closure():
            optimizer.zero_grad()
            loss = criterion(seq(input), target)
            losses.append(loss.item())
            loss.backward()
            return loss
        optimizer.step(closure)
        with torch.no_grad():
            pred = seq(test_input, future=FUTURE)
            test_losses.append(criterion(pred[:, :-FUTURE], test_target).item())
            y = pred.cpu().detach().numpy()
    return losses, test_losses, y


@requires_torch
def test_lbfgs_sine_predictor_trains_as_torch(tmp_path):
    generate_sine_wave(distnn, tmp_path / "distnn.pt")
    generate_sine_wave(torch, tmp_path / "torch.pt")
    distnn.manual_seed(10)
    ours, theirs = sequence_model(distnn, distnn.nn), sequence_model(torch, torch.nn)
    same_start(ours, theirs)
    our_losses, our_tests, our_pred = train_sequence(*modules(distnn), ours, tmp_path / "distnn.pt")
    their_losses, their_tests, their_pred = train_sequence(*modules(torch), theirs, tmp_path / "torch.pt")

    assert len(our_losses) > 2 * STEPS  # LBFGS evaluated the closure several times per step
    assert_same_curve(our_losses, their_losses, rtol=1e-9, what="closure loss")
    assert_same_curve(our_tests, their_tests, rtol=1e-9, what="test loss")
    np.testing.assert_allclose(our_pred, their_pred, rtol=1e-8, atol=1e-10)
    assert our_pred.shape == (3, L - 1 + FUTURE) and our_pred.dtype == np.float64
    assert_same_state(ours, theirs, rtol=1e-8, atol=1e-10)
    assert our_tests[-1] < our_losses[0]
