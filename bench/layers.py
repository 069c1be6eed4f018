"""Forward + backward time of single activation, masking and normalisation layers
at the shapes real models run them, distnn beside PyTorch (when importable).

    python bench/layers.py [--threads 1] [--repeat 30] [--rounds 3] [--case gelu]

Each row is one layer's forward and backward from a fixed upstream gradient (or,
marked eval, its forward under no_grad), timed as bench/real_models.py times a
train step: interleaved rounds, each library in a fresh process, medians.
"""

import os
import sys


def build_cases(lib, args):
    F = lib.nn.functional
    device = args.device

    def layer(fn, shape, module=None):
        def make_step():
            lib.manual_seed(0)
            m = module().to(device) if module else None
            x = lib.randn(*shape, device=device, requires_grad=True)
            g = lib.randn(*shape, device=device)

            def step():
                (m(x) if m else fn(x)).backward(g)
            return step
        return make_step

    def eval_layer(module, shape):
        def make_step():
            lib.manual_seed(0)
            m = module().to(device).eval()
            x = lib.randn(*shape, device=device)

            def step():
                with lib.no_grad():
                    m(x)
            return step
        return make_step

    def masked_fill(x):
        return x.masked_fill(x > 0.5, -1e9)

    conv_map, wide_map, ffn, scores = (32, 64, 32, 32), (32, 96, 32, 32), (16 * 64, 1024), (16, 4, 64, 64)
    return [
        ("relu (32, 64, 32, 32)", layer(F.relu, conv_map)),
        ("relu6 (32, 96, 32, 32)", layer(F.relu6, wide_map)),
        ("leaky_relu 0.2 (32, 64, 32, 32)", layer(lambda x: F.leaky_relu(x, 0.2), conv_map)),
        ("gelu (1024, 1024)", layer(F.gelu, ffn)),
        ("gelu tanh (1024, 1024)", layer(lambda x: F.gelu(x, approximate="tanh"), ffn)),
        ("sigmoid (1024, 1024)", layer(lib.sigmoid, ffn)),
        ("elu (1024, 1024)", layer(F.elu, ffn)),
        ("softplus (1024, 1024)", layer(F.softplus, ffn)),
        ("where (1024, 1024)", layer(lambda x: lib.where(x > 0, x, x * 2), ffn)),
        ("masked_fill scores (16, 4, 64, 64)", layer(masked_fill, scores)),
        ("batch_norm eval (32, 64, 32, 32)", eval_layer(lambda: lib.nn.BatchNorm2d(64), conv_map)),
        ("batch_norm train (32, 64, 32, 32)", layer(None, conv_map, lambda: lib.nn.BatchNorm2d(64))),
        ("group_norm 32 (16, 64, 32, 32)", layer(None, (16, 64, 32, 32), lambda: lib.nn.GroupNorm(32, 64))),
        ("instance_norm (16, 256, 8, 8)",
         layer(None, (16, 256, 8, 8), lambda: lib.nn.InstanceNorm2d(256, affine=True))),
        ("layer_norm (1024, 256)", layer(None, (16 * 64, 256), lambda: lib.nn.LayerNorm(256))),
    ]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    harness.main(os.path.abspath(__file__), __doc__, build_cases, repeat=30, rounds=3)
