#!/usr/bin/env python
"""Homework 2, Question 3: train a caption decoder on cached image features, evaluate with BLEU-4.

Provided: you do not need to change this file. It uses your `Decoder` (decoder.py) or, with
--use_attention, your `DecoderWithAttention` (decoder_with_attention.py).

Run from the repository root, with SYDNEY_DIR pointing at the dataset folder:
    make train-q3 ARGS='--epochs 2 --use_attention'     # or: python train.py --epochs 2 --use_attention
The last line printed is `Test BLEU-4: 0.xxxx`.
"""

import argparse
import copy
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from nltk.translate.bleu_score import corpus_bleu, sentence_bleu
from torch.nn.utils.rnn import pack_padded_sequence
from tqdm import tqdm

import utils
from decoder import Decoder
from decoder_with_attention import DecoderWithAttention

SHOWCASE = ("219", "540", "357")  # test images whose captions the statement asks for


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--use_attention", action="store_true", help="train DecoderWithAttention")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=4e-4, help="Adam (default 4e-4)")
    parser.add_argument("--embed_dim", type=int, default=100)
    parser.add_argument("--decoder_dim", type=int, default=256)
    parser.add_argument("--attention_dim", type=int, default=100)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--grad_clip", type=float, default=5.0, help="clip gradient values to +-grad_clip")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr_decay", type=float, default=1.0,
                        help="multiply the learning rate by this after every epoch (default 1: constant)")
    parser.add_argument("--attention_reg", type=float, default=0.0,
                        help="weight of the doubly stochastic attention penalty of Show, Attend and Tell, "
                             "mean((1 - sum over steps of each location's weight)^2) (default 0: off)")
    parser.add_argument("--encoder", default=None, help="feature encoder (default: data/features.py's DEFAULT_ENCODER)")
    parser.add_argument("--features_layer", default=None, help="encoder layer (default: data/features.py's DEFAULT_LAYER)")
    parser.add_argument("--train_limit", type=int, default=None,
                        help="train on the first N training images only (quick checks)")
    parser.add_argument("--output_dir", default=None, help="default outputs/q3/<attention|no-attention>")
    return parser.parse_args(argv)


def build_model(opt, vocab_size, encoder_dim):
    if opt.use_attention:
        return DecoderWithAttention(vocab_size, opt.embed_dim, opt.decoder_dim, encoder_dim,
                                    opt.attention_dim, opt.dropout)
    return Decoder(vocab_size, opt.embed_dim, opt.decoder_dim, encoder_dim, opt.dropout)


def training_pairs(images, vocab):
    """(image row, encoded caption) for every caption of the given images."""
    return [(image.imgid, vocab.encode(caption)) for image in images for caption in image.captions]


def caption_batches(pairs, features, batch_size, generator, pad):
    """Shuffled mini-batches, each sorted by decreasing caption length.

    Yields encoder_out (b, num_locations, encoder_dim), captions (b, longest) int64 padded
    with `pad`, lengths (b,) counting start and end tokens.
    """
    order = torch.randperm(len(pairs), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        batch = sorted((pairs[i] for i in order[start:start + batch_size]), key=lambda p: -len(p[1]))
        lengths = torch.tensor([len(caption) for _, caption in batch])
        captions = torch.full((len(batch), int(lengths[0])), pad, dtype=torch.long)
        for row, (_, caption) in enumerate(batch):
            captions[row, :len(caption)] = torch.tensor(caption)
        yield features[[imgid for imgid, _ in batch]], captions, lengths


# --attention_reg and the attention figures read the weights off Attention.softmax (an nn.Softmax module)
SOFTMAX_NOT_CALLED = ("Attention.forward never called self.softmax: compute the attention weights with the "
                      "provided module (alpha = self.softmax(scores)), not torch.softmax or F.softmax; "
                      "--attention_reg and the attention figures read the weights from it")


def train_epoch(model, batches, optimizer, criterion, grad_clip, total, attention_reg=0.0):
    """One epoch of teacher forcing; returns the mean loss per batch."""
    model.train()
    losses = []
    alphas = []  # attention weights of each step, (active, num_locations), when attention_reg > 0
    hook = None
    if attention_reg > 0:
        hook = model.attention.softmax.register_forward_hook(lambda module, inputs, output: alphas.append(output))
    try:
        for encoder_out, captions, lengths in tqdm(batches, total=total, desc="training", leave=False):
            # forward, one time step at a time, dropping captions that have ended
            decode_lengths = (lengths - 1).tolist()  # predict every token after <start_seq>
            h, c = model.init_hidden_state(encoder_out)  # (b, decoder_dim) each
            scores = torch.zeros(len(captions), decode_lengths[0], model.vocab_size)  # (b, steps, vocab_size)
            alphas.clear()
            for t in range(decode_lengths[0]):
                active = sum(length > t for length in decode_lengths)
                step_scores, h, c = model(captions[:active, t], h[:active], c[:active], encoder_out[:active])
                scores[:active, t] = step_scores

            # loss on the packed (unpadded) predictions
            targets = captions[:, 1:]  # (b, steps)
            loss = criterion(pack_padded_sequence(scores, decode_lengths, batch_first=True).data,
                             pack_padded_sequence(targets, decode_lengths, batch_first=True).data)
            if attention_reg > 0:  # every location should receive a total weight of about 1 over the caption
                if not alphas:
                    raise RuntimeError(SOFTMAX_NOT_CALLED)
                total_weight = torch.zeros(encoder_out.shape[:2])  # (b, num_locations)
                for step in alphas:
                    total_weight[:len(step)] += step
                loss = loss + attention_reg * ((1 - total_weight) ** 2).mean()

            # backward, clip, step
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_value_(model.parameters(), grad_clip)
            optimizer.step()
            losses.append(loss.item())
    finally:
        if hook is not None:
            hook.remove()
    return sum(losses) / len(losses)


@torch.no_grad()
def greedy_decode(model, encoder_out, vocab, max_length):
    """Greedy captions for a batch of images: lists of words, and the attention weights per step.

    encoder_out: (n, num_locations, encoder_dim). Decoding starts from <start_seq> and stops at
    <end_seq> or after max_length + 1 steps. The attention weights (n, steps, num_locations)
    are those of model.attention.softmax, or None for a decoder without attention.
    """
    model.eval()
    alphas = []
    hook = None
    if hasattr(model, "attention"):
        hook = model.attention.softmax.register_forward_hook(lambda module, inputs, output: alphas.append(output))
    try:
        h, c = model.init_hidden_state(encoder_out)
        word = torch.full((len(encoder_out),), vocab.start, dtype=torch.long)
        steps = []
        for _ in range(max_length + 1):
            scores, h, c = model(word, h, c, encoder_out)
            word = scores.argmax(dim=1)  # (n,)
            steps.append(word)
    finally:
        if hook is not None:
            hook.remove()
    words = torch.stack(steps, dim=1).tolist()  # (n, steps)
    attention = torch.stack(alphas, dim=1) if alphas else None
    return [vocab.decode(row) for row in words], attention


def bleu4(hypotheses, references):
    """Mean sentence BLEU-4 (nltk defaults, no smoothing, as in the hand-out) and corpus BLEU-4."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns when a hypothesis has no 4-gram match (BLEU 0)
        sentence = [sentence_bleu(refs, hyp) for hyp, refs in zip(hypotheses, references)]
        corpus = corpus_bleu(references, hypotheses)
    return sum(sentence) / len(sentence), corpus


def evaluate(model, images, features, vocab, max_length):
    """Greedy captions of `images`; returns (mean sentence BLEU-4, corpus BLEU-4, captions)."""
    hypotheses, _ = greedy_decode(model, features[[image.imgid for image in images]], vocab, max_length)
    references = [[list(caption) for caption in image.captions] for image in images]
    sentence, corpus = bleu4(hypotheses, references)
    return sentence, corpus, hypotheses


def attention_figure(image_file, words, alphas, path):
    """The image once per generated word, with that step's attention weights over it."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    picture = Image.open(image_file).convert("RGB")
    side = int(math.isqrt(alphas.shape[-1]))  # the feature grid is square (16x16 by default)
    tokens = words + ["<end_seq>"]
    columns = 5
    rows = math.ceil(len(tokens) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, token, alpha in zip(axes.flat, tokens, alphas):
        ax.imshow(picture)
        ax.imshow(alpha.reshape(side, side).numpy(), cmap="jet", alpha=0.45, interpolation="bilinear",
                  extent=(0, picture.width, picture.height, 0))
        ax.set_title(token, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    opt = parse_args(argv)
    utils.configure_seed(opt.seed)
    name = "attention" if opt.use_attention else "no-attention"
    output_dir = Path(opt.output_dir or f"outputs/q3/{name}")
    output_dir.mkdir(parents=True, exist_ok=True)

    dataset, features = utils.load_captioning_data(opt.encoder, opt.features_layer)
    vocab = dataset.vocab
    train_images = dataset.split("train")[:opt.train_limit]
    val_images, test_images = dataset.split("val"), dataset.split("test")
    pairs = training_pairs(train_images, vocab)
    print(f"{len(train_images)} training images ({len(pairs)} captions), {len(val_images)} validation, "
          f"{len(test_images)} test; vocabulary {len(vocab)} words; features {tuple(features.shape)}")

    model = build_model(opt, len(vocab), features.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.learning_rate)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=opt.lr_decay)
    criterion = nn.CrossEntropyLoss()
    if opt.attention_reg > 0 and not opt.use_attention:
        raise SystemExit("--attention_reg needs --use_attention")
    if opt.use_attention and greedy_decode(model, features[:2], vocab, 1)[1] is None:  # before training, not after
        raise SystemExit(f"error: {SOFTMAX_NOT_CALLED}")
    generator = torch.Generator().manual_seed(opt.seed)
    steps_per_epoch = (len(pairs) + opt.batch_size - 1) // opt.batch_size

    history = {"epoch": [], "train_loss": [], "val_bleu4": [], "val_corpus_bleu4": []}
    best = {"epoch": 0, "val_bleu4": -1.0, "state": None}  # the epoch with the best validation BLEU-4
    start = time.time()
    for epoch in range(1, opt.epochs + 1):
        batches = caption_batches(pairs, features, opt.batch_size, generator, vocab.pad)
        loss = train_epoch(model, batches, optimizer, criterion, opt.grad_clip, steps_per_epoch, opt.attention_reg)
        scheduler.step()
        val_bleu, val_corpus, _ = evaluate(model, val_images, features, vocab, dataset.max_caption_length)
        for key, value in zip(history, (epoch, loss, val_bleu, val_corpus)):
            history[key].append(value)
        print(f"epoch {epoch}: training loss {loss:.4f}, validation BLEU-4 {val_bleu:.4f} "
              f"(corpus {val_corpus:.4f})", flush=True)
        if not math.isfinite(loss):
            print("the training loss is not a number: the scores overflowed (a learning rate too high?) or the "
                  "decoder's step returns NaN; the rest of this run is meaningless", flush=True)
        if val_bleu > best["val_bleu4"]:
            best = {"epoch": epoch, "val_bleu4": val_bleu, "state": copy.deepcopy(model.state_dict())}

    # test (and the captions below) with the model of the best validation epoch
    model.load_state_dict(best["state"])
    print(f"using the model of epoch {best['epoch']} (best validation BLEU-4 {best['val_bleu4']:.4f})")
    test_bleu, test_corpus, hypotheses = evaluate(model, test_images, features, vocab, dataset.max_caption_length)
    seconds = time.time() - start

    # outputs: plots, captions, metrics, and the three captions the statement asks for
    utils.plot_curve(history["epoch"], history["train_loss"], "training loss", output_dir / "training-loss.png", name)
    utils.plot_curve(history["epoch"], history["val_bleu4"], "validation BLEU-4", output_dir / "validation-bleu4.png", name)
    captions = {image.stem: {"generated": " ".join(words), "references": [" ".join(c) for c in image.captions]}
                for image, words in zip(test_images, hypotheses)}
    utils.save_json(captions, output_dir / "test-captions.json")
    showcase = [dataset.find(stem) for stem in SHOWCASE]
    words, alphas = greedy_decode(model, features[[image.imgid for image in showcase]], vocab, dataset.max_caption_length)
    for image, caption in zip(showcase, words):
        print(f"caption of {image.stem}: {' '.join(caption)}")
    if alphas is not None:
        for image, caption, alpha in zip(showcase, words, alphas):
            attention_figure(utils.sydney_image_path(image.stem), caption, alpha[:len(caption) + 1],
                             output_dir / f"attention-{image.stem}.png")
    utils.save_json({"config": vars(opt), **history, "best_epoch": best["epoch"], "test_bleu4": test_bleu, "test_corpus_bleu4": test_corpus,
                     "showcase": {image.stem: " ".join(c) for image, c in zip(showcase, words)},
                     "train_seconds": seconds}, output_dir / "metrics.json")
    print(f"Outputs in {output_dir}/; test corpus BLEU-4 {test_corpus:.4f}")
    print(f"Test BLEU-4: {test_bleu:.4f}")


if __name__ == "__main__":
    main()
