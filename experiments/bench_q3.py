"""Benchmark Question 3: decoder training throughput, and one attention step against a loop.

    make bench-q3 SYDNEY_DIR=...

1. Training throughput (captions per second) of both reference decoders with the provided
   training loop, on the cached features (default encoder and layer), for a fixed number of
   batches of the hand-out's size.
2. One attention step of the reference `Attention` (vectorized over the batch and the
   locations) against a per-location Python loop computing the same context, measured in the
   same run, checked equal. Last line: `attention speedup: N.Nx`.
"""

import argparse
import time

import torch

from autograder.child.probes import median_seconds
from autograder.submission import load_module

TREE = "solution"


def looped_attention(attention, encoder_out, decoder_hidden):
    """The same additive attention, one location at a time."""
    projected_hidden = attention.decoder_att(decoder_hidden)  # (batch, attention_dim)
    scores = []
    for k in range(encoder_out.shape[1]):
        e = attention.full_att(attention.relu(attention.encoder_att(encoder_out[:, k]) + projected_hidden))  # (batch, 1)
        scores.append(e)
    alpha = torch.softmax(torch.cat(scores, dim=1), dim=1)  # (batch, num_locations)
    context = torch.zeros_like(encoder_out[:, 0])
    for k in range(encoder_out.shape[1]):
        context = context + alpha[:, k:k + 1] * encoder_out[:, k]
    return context


def training_throughput(train, model, pairs, features, vocab, batches):
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-4)
    generator = torch.Generator().manual_seed(0)
    chosen = pairs[:batches * 8]
    start = time.perf_counter()
    train.train_epoch(model, train.caption_batches(chosen, features, 8, generator, vocab.pad), optimizer,
                      torch.nn.CrossEntropyLoss(), 5.0, batches)
    return len(chosen) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="training batches per decoder")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    utils = load_module(TREE, "utils.py")
    train = load_module(TREE, "train.py")
    dataset, features = utils.load_captioning_data()
    vocab = dataset.vocab
    pairs = train.training_pairs(dataset.split("train"), vocab)
    encoder_dim = features.shape[-1]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; features {tuple(features.shape)}")

    decoder = load_module(TREE, "decoder.py").Decoder(len(vocab), 100, 256, encoder_dim, 0.5)
    attention_module = load_module(TREE, "decoder_with_attention.py")
    with_attention = attention_module.DecoderWithAttention(len(vocab), 100, 256, encoder_dim, 100, 0.5)
    for name, model in (("without attention", decoder), ("with attention", with_attention)):
        rate = training_throughput(train, model, pairs, features, vocab, args.batches)
        print(f"training {name}: {rate:.1f} captions/s")

    attention = attention_module.Attention(encoder_dim, 256, 100).eval()
    encoder_out = features[:8]  # (8, num_locations, encoder_dim)
    hidden = torch.randn(8, 256)
    with torch.no_grad():
        torch.testing.assert_close(looped_attention(attention, encoder_out, hidden), attention(encoder_out, hidden),
                                   rtol=1e-4, atol=1e-5)
        vectorized = median_seconds(lambda: attention(encoder_out, hidden), 9)
        looped = median_seconds(lambda: looped_attention(attention, encoder_out, hidden), 3)
    print(f"one attention step, batch 8, {encoder_out.shape[1]} locations: vectorized {vectorized * 1000:.1f} ms, "
          f"per-location loop {looped * 1000:.1f} ms")
    print(f"attention speedup: {looped / vectorized:.1f}x")


if __name__ == "__main__":
    main()
