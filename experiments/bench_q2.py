"""Benchmark: the vectorized CNN forward against a per-sample loop, forward + backward.

    make bench-q2

The loop is the same network with the same weights, applied one example at a time (the way
the reported solution wrote its forward). Both are measured in the same run, interleaved, on
random batches; the result is samples per second and the speedup. A second comparison, forward
only, adds the per-sample loop that writes each sample's output into a float64 numpy buffer (such
a buffer cuts the autograd graph, so it cannot train: only its forward is comparable). Last line:
`speedup at batch 8: N.Nx` (forward + backward, against the float32 loop).
"""

import argparse
import time

import numpy as np
import torch

from autograder.submission import load_module


def make_looped(q2):
    class LoopedCNN(q2.CNN):
        """The reference network, applied to one example at a time."""

        def forward(self, x):
            return torch.cat([super(LoopedCNN, self).forward(x[i:i + 1]) for i in range(len(x))])

    return LoopedCNN


def numpy_buffer_forward(model, x):
    """The per-sample loop into a float64 numpy buffer: one sample at a time, each output copied out."""
    out = np.zeros((len(x), 10), dtype=np.float64)
    for i in range(len(x)):
        out[i] = model(x[i:i + 1]).detach().numpy()[0]
    return out


def forward_samples_per_second(forward, batch, repeats):
    x = torch.rand(batch, 1, 28, 28)
    with torch.no_grad():
        for _ in range(min(3, repeats)):  # warm-up
            forward(x)
        start = time.perf_counter()
        for _ in range(repeats):
            forward(x)
    return batch * repeats / (time.perf_counter() - start)


def samples_per_second(model, batch, repeats):
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.NLLLoss()
    for _ in range(min(3, repeats)):  # warm-up
        loss_fn(model(x), y).backward()
    start = time.perf_counter()
    for _ in range(repeats):
        model.zero_grad()
        loss_fn(model(x), y).backward()
    return batch * repeats / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", default="solution")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is kept")
    parser.add_argument("--repeats", type=int, default=None,
                        help="batches per measurement (default: 480 samples' worth, at least 10; 1: a smoke test)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    q2 = load_module(args.tree, "h2-q2.py")
    vectorized = q2.CNN(0.3).train()
    looped = make_looped(q2)(0.3).train()
    looped.load_state_dict(vectorized.state_dict())

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward+backward, training mode")
    speedups = {}
    for batch in (8, 64):
        repeats = args.repeats or max(10, 480 // batch)
        rates = {"vectorized": [], "loop": []}
        for _ in range(args.rounds):
            rates["vectorized"].append(samples_per_second(vectorized, batch, repeats))
            rates["loop"].append(samples_per_second(looped, batch, repeats))
        median = {name: sorted(r)[len(r) // 2] for name, r in rates.items()}
        speedups[batch] = median["vectorized"] / median["loop"]
        print(f"batch {batch:3d}: vectorized {median['vectorized']:8.0f} samples/s, "
              f"per-sample loop {median['loop']:8.0f} samples/s")
    print("forward only, evaluation mode:")
    vectorized.eval()
    looped.eval()
    forward_speedups = {}
    for batch in (8, 64):
        repeats = args.repeats or max(10, 960 // batch)
        rates = {"vectorized": [], "loop": [], "numpy": []}
        for _ in range(args.rounds):
            rates["vectorized"].append(forward_samples_per_second(vectorized, batch, repeats))
            rates["loop"].append(forward_samples_per_second(looped, batch, repeats))
            rates["numpy"].append(forward_samples_per_second(lambda x: numpy_buffer_forward(vectorized, x), batch,
                                                             repeats))
        median = {name: sorted(r)[len(r) // 2] for name, r in rates.items()}
        forward_speedups[batch] = (median["vectorized"] / median["loop"], median["vectorized"] / median["numpy"])
        print(f"batch {batch:3d}: vectorized {median['vectorized']:8.0f} samples/s, per-sample loop "
              f"{median['loop']:8.0f}, per-sample loop into a float64 numpy buffer {median['numpy']:8.0f}")
    for batch in (64, 8):
        print(f"forward speedup at batch {batch}: {forward_speedups[batch][0]:.1f}x against the float32 loop, "
              f"{forward_speedups[batch][1]:.1f}x against the float64 numpy-buffer loop")
    for batch in (64, 8):
        print(f"speedup at batch {batch}: {speedups[batch]:.1f}x")


if __name__ == "__main__":
    main()
