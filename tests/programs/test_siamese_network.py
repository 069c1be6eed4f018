"""pytorch/examples' siamese_network shape: torchvision's resnet18 with a one-channel
conv1, its children up to the pooling reused as a feature extractor for both
images, the two feature vectors concatenated into a small head with a sigmoid, the
example's init_weights via Module.apply, BCELoss, Adadelta and StepLR, on pairs of
real MNIST digits drawn by the example's APP_MATCHER dataset (Python's ``random``,
seeded alike). distnn.vision.models against torchvision.models from the same
weights, in float64 (raw 0-255 pixels and Adadelta at lr 1.0 make the second step
amplify float32 round-off a hundredfold): the same loss at every step, predictions,
and final parameters and BatchNorm running statistics."""

import random
from types import SimpleNamespace

import numpy as np
import pytest

import distnn
from programs.program_check import (assert_same_curve, assert_same_state, mnist_dataset, modules,
                                    requires_torch, same_start, torch)

IMAGES, BATCH, STEPS, EPOCHS = 300, 4, 2, 2


def siamese_network(torch, nn, models):
    class SiameseNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.resnet = models.resnet18(weights=None)
            self.resnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
            self.fc_in_features = self.resnet.fc.in_features
            self.resnet = torch.nn.Sequential(*(list(self.resnet.children())[:-1]))
            self.fc = nn.Sequential(nn.Linear(self.fc_in_features * 2, 256), nn.ReLU(inplace=True), nn.Linear(256, 1))
            self.sigmoid = nn.Sigmoid()
            self.resnet.apply(self.init_weights)
            self.fc.apply(self.init_weights)

        def init_weights(self, m):
            if isinstance(m, nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                m.bias.data.fill_(0.01)

        def forward_once(self, x):
            output = self.resnet(x)
            return output.view(output.size()[0], -1)

        def forward(self, input1, input2):
            output = torch.cat((self.forward_once(input1), self.forward_once(input2)), 1)
            return self.sigmoid(self.fc(output))
    return SiameseNetwork()


def app_matcher(torch, mnist):
    """The example's pair dataset over ``mnist`` (anything with uint8 ``data`` and ``targets``)."""

    class APP_MATCHER(torch.utils.data.Dataset):
        def __init__(self):
            super().__init__()
            self.data = mnist.data.unsqueeze(1).clone()
            np_arr = np.array(mnist.targets.clone())
            self.grouped_examples = {i: np.where(np_arr == i)[0] for i in range(10)}

        def __len__(self):
            return self.data.shape[0]

        def __getitem__(self, index):
            selected_class = random.randint(0, 9)
            random_index_1 = random.randint(0, self.grouped_examples[selected_class].shape[0] - 1)
            image_1 = self.data[self.grouped_examples[selected_class][random_index_1]].clone().float()
            if index % 2 == 0:
                random_index_2 = random.randint(0, self.grouped_examples[selected_class].shape[0] - 1)
                while random_index_2 == random_index_1:
                    random_index_2 = random.randint(0, self.grouped_examples[selected_class].shape[0] - 1)
                image_2 = self.data[self.grouped_examples[selected_class][random_index_2]].clone().float()
                target = torch.tensor(1, dtype=torch.float)
            else:
                other_selected_class = random.randint(0, 9)
                while other_selected_class == selected_class:
                    other_selected_class = random.randint(0, 9)
                random_index_2 = random.randint(0, self.grouped_examples[other_selected_class].shape[0] - 1)
                image_2 = self.data[self.grouped_examples[other_selected_class][random_index_2]].clone().float()
                target = torch.tensor(0, dtype=torch.float)
            return image_1, image_2, target
    return APP_MATCHER()


def train_siamese(torch, nn, F, optim, model, dataset, dtype):
    """The example's train and test loops, a few batches each, with ``model`` and
    batches in ``dtype``; returns (losses, correct per epoch)."""
    model = model.to(dtype)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH)
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    criterion = nn.BCELoss()
    losses, correct = [], []
    random.seed(0)  # APP_MATCHER draws its pairs from Python's random, as in the example
    for _ in range(EPOCHS):
        model.train()
        for batch_idx, (images_1, images_2, targets) in enumerate(loader):
            if batch_idx == STEPS:
                break
            images_1, images_2, targets = images_1.to(dtype), images_2.to(dtype), targets.to(dtype)
            optimizer.zero_grad()
            outputs = model(images_1, images_2).squeeze()
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            images_1, images_2, targets = (t.to(dtype) for t in next(iter(loader)))
            outputs = model(images_1, images_2).squeeze()
            pred = torch.where(outputs > 0.5, 1, 0)
            correct.append(pred.eq(targets.view_as(pred)).sum().item())
        scheduler.step()
    return losses, correct


@requires_torch
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # torch's __array__
def test_siamese_resnet18_trains_as_torch(torchvision):
    from distnn.vision import models
    mnist = mnist_dataset(train=True)
    subset = SimpleNamespace(data=mnist.data[:IMAGES], targets=mnist.targets[:IMAGES])
    torch_subset = SimpleNamespace(data=torch.from_numpy(subset.data.numpy()),
                                   targets=torch.from_numpy(subset.targets.numpy()))
    distnn.manual_seed(9)
    ours = siamese_network(distnn, distnn.nn, models)
    theirs = siamese_network(torch, torch.nn, torchvision.models)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    same_start(ours, theirs)
    our_losses, our_correct = train_siamese(*modules(distnn), ours, app_matcher(distnn, subset), distnn.float64)
    their_losses, their_correct = train_siamese(*modules(torch), theirs, app_matcher(torch, torch_subset),
                                                torch.float64)

    assert_same_curve(our_losses, their_losses, rtol=1e-7)
    assert our_correct == their_correct
    assert_same_state(ours, theirs, rtol=1e-5, atol=1e-8)
