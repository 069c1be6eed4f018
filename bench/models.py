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


def mlp(lib, sizes):
    """Linear layers of ``sizes`` with ReLUs between them (784-1024-1024-10: 1.86M
    parameters, 7.45 MB of float32 gradients)."""
    nn = lib.nn
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


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


def examples_mnist_cnn(lib):
    """pytorch/examples' mnist/main.py network (log_softmax output, nll_loss)."""
    nn, F = lib.nn, lib.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv2(F.relu(self.conv1(x))))
            x = self.dropout1(F.max_pool2d(x, 2))
            x = self.dropout2(F.relu(self.fc1(lib.flatten(x, 1))))
            return F.log_softmax(self.fc2(x), dim=1)
    return Net()


def _conv_bn_relu(nn, cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def small_resnet(lib, num_classes=10):
    """conv3x3 + BatchNorm2d + ReLU blocks with residual adds, 32 then 64
    channels after a stride-2 conv, adaptive average pooling."""
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.body = nn.Sequential(*_conv_bn_relu(nn, channels, channels),
                                      nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + x)

    return nn.Sequential(*_conv_bn_relu(nn, 3, 32), Block(32), Block(32), *_conv_bn_relu(nn, 32, 64, stride=2),
                         Block(64), Block(64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def resnet18(lib, num_classes=10):
    """torchvision's resnet18 (7x7 stride-2 stem, max pool, 4 stages of
    BasicBlocks), as ``torchvision.models.resnet18(num_classes=...)`` builds it."""
    nn = lib.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            out += identity
            return self.relu(out)

    stages, cin = [], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        stages += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), *stages, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(512, num_classes))


def mobilenet_v2_small(lib, num_classes=10):
    """MobileNetV2-style inverted residuals: 1x1 expand, 3x3 depthwise
    (groups = channels), 1x1 project, BatchNorm and ReLU6 throughout."""
    nn = lib.nn

    def conv_bn(cin, cout, kernel, stride=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + ([nn.ReLU6(inplace=True)] if act else [])

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand=6):
            super().__init__()
            hidden = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.conv = nn.Sequential(*conv_bn(cin, hidden, 1), *conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                      *conv_bn(hidden, cout, 1, act=False))

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    blocks, cin = [], 32
    for cout, stride in ((16, 1), (24, 2), (24, 1), (32, 2), (32, 1), (64, 2), (64, 1)):
        blocks.append(InvertedResidual(cin, cout, stride, expand=1 if cout == 16 else 6))
        cin = cout
    return nn.Sequential(*conv_bn(3, 32, 3), *blocks, *conv_bn(cin, 256, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(256, num_classes))


def dcgan_generator(lib, nz=100, ngf=32, nc=3):
    """pytorch/examples' DCGAN generator (64x64 images; ngf halved): transposed
    4x4 convolutions from a 1x1 latent, BatchNorm and ReLU between, Tanh out."""
    nn = lib.nn

    def up(cin, cout, stride=2, padding=1):
        return [nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    return nn.Sequential(*up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
                         nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


def rnn_language_model(lib, kind, ntoken=10000, ninp=200, nhid=200, nlayers=2, dropout=0.2):
    """pytorch/examples' word_language_model RNNModel (encoder, LSTM/GRU, decoder)."""
    nn = lib.nn

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = getattr(nn, kind)(ninp, nhid, nlayers, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)

        def forward(self, tokens, hidden):
            output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
            return self.decoder(self.drop(output)).view(-1, ntoken), hidden
    return RNNModel()


def transformer_language_model(lib, ntoken=10000, d_model=256, nhead=4, nlayers=4, dim_feedforward=1024,
                               dropout=0.1):
    """A causal TransformerEncoder language model (as pytorch/examples'
    TransformerModel, with a learned position embedding, batch first)."""
    nn = lib.nn

    class TransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(ntoken, d_model)
            self.pos = nn.Embedding(512, d_model)
            layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
            self.decoder = nn.Linear(d_model, ntoken)

        def forward(self, tokens, mask):
            positions = lib.arange(tokens.shape[1], device=tokens.device)
            x = self.embed(tokens) + self.pos(positions)
            return self.decoder(self.encoder(x, mask=mask, is_causal=True)).view(-1, ntoken)
    return TransformerLM()
