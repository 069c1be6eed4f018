"""pytorch/examples' vae shape: a fully connected VAE on real MNIST pixels in [0, 1]
with the reparameterisation trick, the example's loss (binary cross-entropy summed,
the continuous-Bernoulli log normaliser built from where/max/le/gt, and the KL
term), Adam, an eval pass that writes a reconstruction grid, and a grid of decoded
samples per epoch, both with ``save_image``; in float64 (``model.double()``), since
Adam turns gradients near zero into full steps whose sign float32 round-off can
flip. The normal draws (``randn_like``,
``randn``) come from one numpy generator for both libraries, so distnn and PyTorch
see the same noise: the same loss at every step, the same test losses and final
parameters, and the same PNG pixels."""

import numpy as np

import distnn
from programs.program_check import (NumpyNoise, assert_same_curve, assert_same_state, load_numpy_state,
                                    mnist_subset, modules, numpy_state, read_png, requires_torch, torch)

TRAIN, TEST, BATCH, EPOCHS, LATENT = 128, 64, 32, 2, 20


def vae_model(torch, nn, F, randn_like):
    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, LATENT)
            self.fc22 = nn.Linear(400, LATENT)
            self.fc3 = nn.Linear(LATENT, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = randn_like(std)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.clamp(torch.sigmoid(self.fc4(h3)), min=1e-4, max=1.0 - 1e-4)

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, 784))
            z = self.reparameterize(mu, logvar)
            return self.decode(z), mu, logvar
    return VAE()


def loss_function(torch, F, recon_x, x, mu, logvar):
    def atanh(x):
        return 0.5 * (torch.log(1.0 + x) - torch.log(1.0 - x))

    def cont_bern_log_norm(lam, l_lim=0.49, u_lim=0.51):
        outside = torch.max(torch.le(lam, l_lim), torch.gt(lam, u_lim))
        cut_lam = torch.where(outside, lam, l_lim * torch.ones_like(lam))
        log_norm = torch.log(torch.abs(2.0 * atanh(1 - 2.0 * cut_lam))) - torch.log(torch.abs(1 - 2.0 * cut_lam))
        taylor = torch.log(torch.tensor(2.0)) + 4.0 / 3.0 * torch.pow(lam - 0.5, 2) \
            + 104.0 / 45.0 * torch.pow(lam - 0.5, 4)
        return torch.where(outside, log_norm, taylor)

    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    NLNC = -torch.sum(cont_bern_log_norm(recon_x))
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + NLNC + KLD


def train_vae(torch, nn, F, optim, utils, model, train_images, test_images, out_dir, randn):
    """The example's loop; returns (per-step losses, per-epoch test losses, image paths)."""
    data = torch.utils.data
    train_loader = data.DataLoader(data.TensorDataset(torch.from_numpy(train_images)), batch_size=BATCH)
    test_loader = data.DataLoader(data.TensorDataset(torch.from_numpy(test_images)), batch_size=BATCH)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    losses, test_losses, images = [], [], []
    for epoch in range(1, EPOCHS + 1):
        model.train()
        for (batch,) in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(batch)
            loss = loss_function(torch, F, recon_batch, batch, mu, logvar)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i, (batch,) in enumerate(test_loader):
                recon_batch, mu, logvar = model(batch)
                test_loss += loss_function(torch, F, recon_batch, batch, mu, logvar).item()
                if i == 0:
                    n = min(batch.size(0), 8)
                    comparison = torch.cat([batch[:n], recon_batch.view(BATCH, 1, 28, 28)[:n]])
                    images.append(out_dir / f"reconstruction_{epoch}.png")
                    utils.save_image(comparison.cpu(), str(images[-1]), nrow=n)
        test_losses.append(test_loss / len(test_loader.dataset))
        with torch.no_grad():
            sample = model.decode(randn(64, LATENT)).cpu()
            images.append(out_dir / f"sample_{epoch}.png")
            utils.save_image(sample.view(64, 1, 28, 28), str(images[-1]))
    return losses, test_losses, images


def run(lib, utils, arrays, out_dir, state=None):
    """Build the VAE in float64 (with ``state``, else distnn's initial weights), train it;
    its normal draws come from one numpy generator, in the same order for either library."""
    noise = NumpyNoise(seed=7)
    model = vae_model(lib, lib.nn, lib.nn.functional, randn_like=lambda t: noise(lib, t.shape, np.float64))
    model.double()
    if state is not None:
        load_numpy_state(model, lib, state)
    start = numpy_state(model)
    out_dir.mkdir()
    return (model, start, *train_vae(*modules(lib), utils, model, *arrays, out_dir,
                                     randn=lambda *shape: noise(lib, shape, np.float64)))


@requires_torch
def test_vae_trains_and_draws_as_torch(tmp_path, torchvision, pil_image):
    from distnn.vision import transforms, utils
    arrays = [mnist_subset(n, train, transforms.ToTensor())[0].astype(np.float64)
              for n, train in ((TRAIN, True), (TEST, False))]
    distnn.manual_seed(6)
    ours, start, our_losses, our_tests, our_images = run(distnn, utils, arrays, tmp_path / "distnn")
    theirs, _, their_losses, their_tests, their_images = run(torch, torchvision.utils, arrays, tmp_path / "torch",
                                                             state=start)

    assert_same_curve(our_losses, their_losses, rtol=1e-10)
    assert_same_curve(our_tests, their_tests, rtol=1e-10, what="test loss")
    assert_same_state(ours, theirs, rtol=1e-8, atol=1e-10)
    assert [p.name for p in our_images] == [p.name for p in their_images] == \
        ["reconstruction_1.png", "sample_1.png", "reconstruction_2.png", "sample_2.png"]
    for mine, other in zip(our_images, their_images):
        ours_px, theirs_px = read_png(mine), read_png(other)
        assert ours_px.shape == theirs_px.shape == ((62, 242, 3) if "reconstruction" in mine.name else (242, 242, 3))
        assert np.abs(ours_px.astype(int) - theirs_px.astype(int)).max() <= 1, f"{mine.name}: pixels differ"
    assert our_tests[-1] < our_tests[0]
