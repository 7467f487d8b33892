#!/usr/bin/env python
"""Homework 2, Question 2: a convolutional network for Fashion-MNIST.

You complete three pieces, marked "YOUR CODE HERE":
  - `CNN.__init__`: the layers of the network described in the statement;
  - `CNN.forward`: the forward pass, vectorized over the batch (no Python loop over examples);
  - `train_batch`: one optimisation step on one mini-batch.
Everything else (data, training loop, evaluation, plots) is provided.

Run from the repository root:
    make train-q2 ARGS='-epochs 1'            # or: python h2-q2.py -epochs 1
The last line printed is `Final test accuracy: 0.xxxx`.
"""

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset
from tqdm import tqdm

import utils


class CNN(nn.Module):
    def __init__(self, dropout_prob):
        """Build the layers of the network (769,930 trainable parameters in all).

        Architecture, for inputs of shape (batch, 1, 28, 28):
          1. conv, 1 -> 16 channels, kernel 3x3, stride 1, padding 1; ReLU;
             max-pool 2x2, stride 2                                -> (batch, 16, 14, 14)
          2. conv, 16 -> 32 channels, kernel 3x3, stride 1, no padding; ReLU;
             max-pool 2x2, stride 2                                -> (batch, 32, 6, 6)
          3. flatten -> (batch, 1152); linear 1152 -> 600; ReLU; dropout(dropout_prob)
          4. linear 600 -> 120; ReLU
          5. linear 120 -> 10; log-softmax over the 10 classes

        dropout_prob: float, probability of zeroing a unit of the 600-unit layer in training.
        Layers with parameters must be attributes of `self` (e.g. `self.conv1 = nn.Conv2d(...)`).
        """
        super().__init__()
        ### BEGIN SOLUTION (~ 6 lines: two nn.Conv2d, three nn.Linear, one nn.Dropout)
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=1, padding=1)  # first conv block
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=0)  # second conv block
        self.fc1 = nn.Linear(32 * 6 * 6, 600)  # flattened features -> hidden layer
        self.dropout = nn.Dropout(dropout_prob)  # after the first hidden layer only
        self.fc2 = nn.Linear(600, 120)
        self.fc3 = nn.Linear(120, 10)  # class scores
        ### END SOLUTION

    def forward(self, x):
        """Class log-probabilities for a batch of images, computed for the whole batch at once.

        x: float32 tensor (batch, 1, 28, 28)
        Returns: float32 tensor (batch, 10) of log-probabilities: each row's exp sums to 1.
        Use the layers built in __init__ and torch.nn.functional (F.relu, F.max_pool2d,
        F.log_softmax); no Python loop over the examples of the batch.
        """
        ### BEGIN SOLUTION (~ 8 lines)
        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)  # (batch, 16, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=2, stride=2)  # (batch, 32, 6, 6)
        x = x.flatten(start_dim=1)  # (batch, 1152)
        x = self.dropout(F.relu(self.fc1(x)))  # (batch, 600)
        x = F.relu(self.fc2(x))  # (batch, 120)
        return F.log_softmax(self.fc3(x), dim=1)  # (batch, 10)
        ### END SOLUTION


def train_batch(X, y, model, optimizer, criterion):
    """One optimisation step on one mini-batch; return the loss on that batch.

    X: float32 tensor (batch, 1, 28, 28)
    y: int64 tensor (batch,), the gold classes
    model: a CNN in training mode
    optimizer: a torch.optim optimizer over model.parameters()
    criterion: the loss, called as criterion(model output, y) (here nn.NLLLoss())
    Returns: the loss of this batch as a Python float (before the update).
    Steps: clear the old gradients, forward, loss, backward, update the weights.
    """
    ### BEGIN SOLUTION (~ 6 lines)
    optimizer.zero_grad()
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


def predict(model, X):
    """Predicted classes (n,) for a batch of images X (n, 1, 28, 28)."""
    return model(X).argmax(dim=-1)


@torch.no_grad()
def evaluate(model, X, y, batch_size=1000):
    """Accuracy of `model` on (X, y), in evaluation mode (dropout off); the model is left in the mode it
    was in."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(X), batch_size):
        correct += (predict(model, X[start:start + batch_size]) == y[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(X)


def plot_kernels(model, output_dir):
    """Save the learned 3x3 kernels of both conv layers as image grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]  # whatever their names
    for (name, nrow), convolution in zip((("conv1", 8), ("conv2", 16)), convolutions):
        weight = convolution.weight.detach().cpu()  # (out, in, 3, 3)
        kernels = weight.reshape(-1, 1, *weight.shape[2:])  # one grey image per kernel
        grid = make_grid(kernels, nrow=nrow, normalize=True, scale_each=True, padding=1)
        fig, ax = plt.subplots(figsize=(nrow / 2, grid.shape[1] / grid.shape[2] * nrow / 2 + 0.4))
        ax.imshow(grid[0], cmap="gray", interpolation="nearest")
        ax.set_title(f"{name} kernels ({weight.shape[0]} filters x {weight.shape[1]} input channels)",
                     fontsize=8)
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(Path(output_dir) / f"kernels-{name}.png", dpi=120)
        plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("-epochs", default=15, type=int, help="number of epochs (default 15)")
    parser.add_argument("-batch_size", default=8, type=int, help="mini-batch size (default 8)")
    parser.add_argument("-learning_rate", default=0.01, type=float, help="default 0.01")
    parser.add_argument("-l2_decay", default=0.0, type=float, help="weight decay (default 0)")
    parser.add_argument("-dropout", default=0.3, type=float, help="dropout probability (default 0.3)")
    parser.add_argument("-optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("-seed", default=42, type=int, help="random seed (default 42)")
    parser.add_argument("-output_dir", default="outputs/q2", help="where plots and metrics go")
    parser.add_argument("-train_limit", default=None, type=int,
                        help="train on the first N training examples only (quick checks)")
    return parser.parse_args(argv)


def main(argv=None):
    opt = parse_args(argv)
    utils.configure_seed(opt.seed)
    output_dir = Path(opt.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    splits = utils.load_fashion_mnist()
    train_X, train_y = splits["train"]
    if opt.train_limit is not None:
        train_X, train_y = train_X[:opt.train_limit], train_y[:opt.train_limit]
    dev_X, dev_y = splits["dev"]
    test_X, test_y = splits["test"]

    # each step draws one shuffled mini-batch of indices and indexes the tensors once
    batches = BatchSampler(RandomSampler(range(len(train_X)), generator=torch.Generator().manual_seed(opt.seed)),
                           batch_size=opt.batch_size, drop_last=False)
    train_loader = DataLoader(TensorDataset(train_X, train_y), sampler=batches, batch_size=None)

    model = CNN(opt.dropout)
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    optimizer = optimizers[opt.optimizer](model.parameters(), lr=opt.learning_rate, weight_decay=opt.l2_decay)
    criterion = nn.NLLLoss()

    history = {"epoch": [], "train_loss": [], "valid_acc": []}
    start = time.time()
    for epoch in range(1, opt.epochs + 1):
        model.train()
        losses = []
        for X_batch, y_batch in tqdm(train_loader, desc=f"epoch {epoch}/{opt.epochs}", leave=False):
            losses.append(train_batch(X_batch, y_batch, model, optimizer, criterion))
        mean_loss = sum(losses) / len(losses)
        valid_acc = evaluate(model, dev_X, dev_y)
        history["epoch"].append(epoch)
        history["train_loss"].append(mean_loss)
        history["valid_acc"].append(valid_acc)
        print(f"epoch {epoch}: training loss {mean_loss:.4f}, valid acc {valid_acc:.4f}", flush=True)
        if not math.isfinite(mean_loss):
            print("the training loss is not a number: the learning rate may be too high, or forward/train_batch "
                  "returns NaN (log of 0? softmax instead of log_softmax?); the rest of this run is meaningless",
                  flush=True)

    test_acc = evaluate(model, test_X, test_y)
    seconds = time.time() - start

    utils.plot_curve(history["epoch"], history["train_loss"], "training loss", output_dir / "training-loss.png")
    utils.plot_curve(history["epoch"], history["valid_acc"], "validation accuracy", output_dir / "validation-accuracy.png")
    plot_kernels(model, output_dir)
    utils.save_json({"config": vars(opt), **history, "test_acc": test_acc, "train_seconds": seconds},
                    output_dir / "metrics.json")
    print(f"Outputs in {output_dir}/ (metrics.json, training-loss.png, validation-accuracy.png, kernels-*.png)")
    print(f"Final test accuracy: {test_acc:.4f}")


if __name__ == "__main__":
    main()
