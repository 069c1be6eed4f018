"""pytorch/examples' mnist shape: a two-conv network with dropout, log_softmax and
nll_loss, Adadelta (lr 1.0) with StepLR (gamma 0.7) stepped per epoch, an eval
pass under no_grad per epoch, on real MNIST read through distnn's MNIST dataset
and transforms. Same weights and batch order on distnn and PyTorch: the same loss
at every step, test loss, accuracy, learning rates and final parameters."""

import numpy as np

import distnn
from programs.program_check import (assert_same_curve, assert_same_state, mnist_subset, modules,
                                    requires_torch, same_start, torch)

TRAIN, TEST, BATCH, EPOCHS = 128, 200, 32, 2


def mnist_net(torch, nn, F, dropout=(0.25, 0.5)):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(dropout[0])
            self.dropout2 = nn.Dropout(dropout[1])
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = self.dropout2(x)
            return F.log_softmax(self.fc2(x), dim=1)
    return Net()


def train_and_test(torch, nn, F, optim, model, train_arrays, test_arrays):
    """The example's main loop; returns (per-step losses, per-epoch (test loss, correct), lrs)."""
    device = torch.device("cpu")
    data = torch.utils.data
    train_loader = data.DataLoader(data.TensorDataset(*map(torch.from_numpy, train_arrays)), batch_size=BATCH)
    test_loader = data.DataLoader(data.TensorDataset(*map(torch.from_numpy, test_arrays)), batch_size=100)
    model = model.to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    losses, tests, lrs = [], [], []
    for _ in range(EPOCHS):
        model.train()
        for data_batch, target in train_loader:
            data_batch, target = data_batch.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data_batch), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data_batch, target in test_loader:
                output = model(data_batch.to(device))
                test_loss += F.nll_loss(output, target, reduction="sum").item()
                pred = output.argmax(dim=1, keepdim=True)
                correct += pred.eq(target.view_as(pred)).sum().item()
        tests.append((test_loss / len(test_loader.dataset), correct))
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.step()
    return losses, tests, lrs


def mnist_arrays():
    from distnn.vision import transforms
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = mnist_subset(TRAIN, train=True, transform=transform)
    order = np.random.default_rng(1).permutation(TRAIN)  # the shuffle, drawn once for both
    return (train[0][order], train[1][order]), mnist_subset(TEST, train=False, transform=transform)


@requires_torch
def test_mnist_cnn_trains_as_torch():
    train_arrays, test_arrays = mnist_arrays()
    distnn.manual_seed(1)
    no_dropout = (0.0, 0.0)  # dropout masks come from each library's own generator
    ours = mnist_net(distnn, distnn.nn, distnn.nn.functional, no_dropout)
    theirs = mnist_net(torch, torch.nn, torch.nn.functional, no_dropout)
    same_start(ours, theirs)
    our_losses, our_tests, our_lrs = train_and_test(*modules(distnn), ours, train_arrays, test_arrays)
    their_losses, their_tests, their_lrs = train_and_test(*modules(torch), theirs, train_arrays, test_arrays)

    assert_same_curve(our_losses, their_losses, rtol=1e-4)
    assert_same_curve([t[0] for t in our_tests], [t[0] for t in their_tests], rtol=1e-4, what="test loss")
    assert [t[1] for t in our_tests] == [t[1] for t in their_tests]
    assert our_lrs == their_lrs == [1.0, 0.7]
    assert_same_state(ours, theirs, rtol=1e-3, atol=1e-4)
    assert our_tests[1][0] < our_tests[0][0] and our_tests[1][1] > 0.25 * TEST  # it learns (chance: 10%)


def test_mnist_cnn_with_dropout_learns():
    """The example as written (dropout 0.25 and 0.5) runs and learns on distnn alone."""
    train_arrays, test_arrays = mnist_arrays()
    distnn.manual_seed(2)
    model = mnist_net(distnn, distnn.nn, distnn.nn.functional)
    losses, tests, _ = train_and_test(*modules(distnn), model, train_arrays, test_arrays)
    assert losses[-1] < 0.8 * losses[0] and tests[-1][1] > 0.3 * TEST  # chance: 10%
