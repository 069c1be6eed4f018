"""Train-step time of the models users train, distnn beside PyTorch (when importable).

    python bench/real_models.py [--threads 1] [--repeat 10] [--rounds 3] [--case LSTM]

Each row is one full step (zero_grad, forward, loss, backward, clip where the
original program clips, SGD update) at a batch size the model is trained with;
the models (bench/models.py) are written once against the API distnn and
PyTorch share. The timing harness is bench/harness.py: fresh processes,
interleaved rounds, medians.
"""

import os
import sys


def build_cases(lib, args):
    """(name, make_step) per model."""
    import models
    nn, F, device = lib.nn, lib.nn.functional, args.device

    def classifier(build, batch, in_shape, loss=F.cross_entropy):
        def make_step():
            model = build().to(device)
            x, y = lib.randn(batch, *in_shape, device=device), lib.randint(0, 10, (batch,), device=device)
            opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

            def step():
                opt.zero_grad()
                loss(model(x), y).backward()
                opt.step()
            return step
        return make_step

    def rnn_lm(kind, bptt=35, batch=20, ntoken=10000):
        def make_step():
            model = models.rnn_language_model(lib, kind, ntoken).to(device)
            tokens = lib.randint(0, ntoken, (bptt, batch), device=device)
            targets = lib.randint(0, ntoken, (bptt * batch,), device=device)
            zeros = lib.zeros(2, batch, 200, device=device)
            hidden = (zeros, zeros) if kind == "LSTM" else zeros
            opt = lib.optim.SGD(model.parameters(), lr=20)

            def step():
                # A fresh detached hidden state each step, as repackage_hidden.
                model.zero_grad()
                output, _ = model(tokens, hidden)
                F.cross_entropy(output, targets).backward()
                nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                opt.step()
            return step
        return make_step

    def transformer_lm(batch=16, seq=64, ntoken=10000):
        def make_step():
            model = models.transformer_language_model(lib, ntoken).to(device)
            tokens = lib.randint(0, ntoken, (batch, seq), device=device)
            targets = lib.randint(0, ntoken, (batch * seq,), device=device)
            mask = nn.Transformer.generate_square_subsequent_mask(seq, device=device)
            opt = lib.optim.AdamW(model.parameters(), lr=1e-4)

            def step():
                opt.zero_grad()
                F.cross_entropy(model(tokens, mask), targets).backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            return step
        return make_step

    def generator(batch=32, nz=100):
        def make_step():
            model = models.dcgan_generator(lib, nz).to(device)
            z = lib.randn(batch, nz, 1, 1, device=device)
            target = lib.rand(batch, 3, 64, 64, device=device) * 2 - 1
            opt = lib.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))

            def step():
                opt.zero_grad()
                F.mse_loss(model(z), target).backward()
                opt.step()
            return step
        return make_step

    return [
        ("examples mnist CNN, batch 64", classifier(lambda: models.examples_mnist_cnn(lib), 64, (1, 28, 28),
                                                     loss=F.nll_loss)),
        ("small ResNet 32x32, batch 32", classifier(lambda: models.small_resnet(lib), 32, (3, 32, 32))),
        ("ResNet-18 32x32, batch 32", classifier(lambda: models.resnet18(lib), 32, (3, 32, 32))),
        ("ResNet-18 64x64, batch 16", classifier(lambda: models.resnet18(lib), 16, (3, 64, 64))),
        ("MobileNetV2-style 32x32, batch 32", classifier(lambda: models.mobilenet_v2_small(lib), 32, (3, 32, 32))),
        ("LSTM LM 2x200, bptt 35, batch 20", rnn_lm("LSTM")),
        ("GRU LM 2x200, bptt 35, batch 20", rnn_lm("GRU")),
        ("Transformer LM 4x256, seq 64, batch 16", transformer_lm()),
        ("DCGAN generator 64x64, batch 32", generator()),
    ]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    harness.main(os.path.abspath(__file__), __doc__, build_cases, repeat=10, rounds=3)
