"""The benchmark models, written once against the torch-style API shared by
distnn and PyTorch: ``mnist_convnet(lib)`` is the seed tutorial's ConvNet
(without the ReLU on the logits), ``seed_rnn(lib, ...)`` its RNN."""


def mnist_convnet(lib):
    nn, F = lib.nn, lib.nn.functional

    class MNISTConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 10, 5)
            self.pool1 = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(10, 20, 5)
            self.pool2 = nn.MaxPool2d(2, 2)
            self.fc1 = nn.Linear(320, 50)
            self.fc2 = nn.Linear(50, 10)

        def forward(self, x):
            x = self.pool1(F.relu(self.conv1(x)))
            x = self.pool2(F.relu(self.conv2(x)))
            x = x.view(x.size(0), -1)
            return self.fc2(F.relu(self.fc1(x)))
    return MNISTConvNet()


def seed_rnn(lib, data_size, hidden_size, output_size):
    nn = lib.nn

    class RNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.i2h = nn.Linear(data_size + hidden_size, hidden_size)
            self.h2o = nn.Linear(hidden_size, output_size)

        def forward(self, data, last_hidden):
            hidden = self.i2h(lib.cat((data, last_hidden), 1))
            return hidden, self.h2o(hidden)
    return RNN()
