"""The reference decoders: shapes, a softmax over locations, the context as an independent
computation gives it, the hidden state used; and the skeleton's stubs fail loudly."""

import pytest
import torch
import torch.nn.functional as F

from autograder.submission import load_module
from tests.conftest import ASSIGNMENT, SOLUTION

SIZES = [  # batch, num_locations, encoder_dim, decoder_dim
    (1, 256, 1280, 256),
    (5, 9, 32, 16),
    (8, 196, 512, 64),
]


def _inputs(batch, locations, encoder_dim, decoder_dim, vocab=30):
    return (torch.randint(0, vocab, (batch,)), torch.randn(batch, decoder_dim), torch.randn(batch, decoder_dim),
            torch.randn(batch, locations, encoder_dim))


@pytest.mark.parametrize("batch, locations, encoder_dim, decoder_dim", SIZES)
def test_decoder_step_shapes(q3_decoder, q3_attention, batch, locations, encoder_dim, decoder_dim):
    models = [q3_decoder.Decoder(30, 12, decoder_dim, encoder_dim),
              q3_attention.DecoderWithAttention(30, 12, decoder_dim, encoder_dim, attention_dim=7)]
    for model in models:
        scores, h, c = model(*_inputs(batch, locations, encoder_dim, decoder_dim))
        assert scores.shape == (batch, 30) and h.shape == c.shape == (batch, decoder_dim)
        assert scores.dtype == h.dtype == c.dtype == torch.float32


def _independent_attention(attention, encoder_out, hidden):
    """Additive attention written out with the layer weights, one location at a time."""
    We, be = attention.encoder_att.weight, attention.encoder_att.bias
    Wd, bd = attention.decoder_att.weight, attention.decoder_att.bias
    wf, bf = attention.full_att.weight[0], attention.full_att.bias[0]
    batch, locations, _ = encoder_out.shape
    scores = torch.empty(batch, locations, dtype=encoder_out.dtype)
    for b in range(batch):
        projected_hidden = Wd @ hidden[b] + bd
        for k in range(locations):
            scores[b, k] = wf @ torch.clamp(We @ encoder_out[b, k] + be + projected_hidden, min=0) + bf
    alpha = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
    alpha = alpha / alpha.sum(dim=1, keepdim=True)
    context = torch.stack([sum(alpha[b, k] * encoder_out[b, k] for k in range(locations)) for b in range(batch)])
    return alpha, context


@pytest.mark.parametrize("batch, locations, encoder_dim, decoder_dim", [(3, 10, 6, 5), (2, 16, 20, 8)])
def test_attention_is_a_softmax_and_the_context_its_weighted_sum(q3_attention, batch, locations, encoder_dim,
                                                                 decoder_dim):
    attention = q3_attention.Attention(encoder_dim, decoder_dim, attention_dim=4).double()
    encoder_out = torch.randn(batch, locations, encoder_dim, dtype=torch.float64)
    hidden = torch.randn(batch, decoder_dim, dtype=torch.float64)
    captured = []
    attention.softmax.register_forward_hook(lambda module, inputs, output: captured.append(output))
    context = attention(encoder_out, hidden)
    alpha, expected = _independent_attention(attention, encoder_out, hidden)
    torch.testing.assert_close(captured[0].sum(dim=1), torch.ones(batch, dtype=torch.float64))
    torch.testing.assert_close(captured[0], alpha)
    torch.testing.assert_close(context, expected)


def test_attention_depends_on_the_hidden_state(q3_attention):
    attention = q3_attention.Attention(12, 6, attention_dim=5)
    encoder_out = torch.randn(4, 9, 12)
    assert not torch.allclose(attention(encoder_out, torch.randn(4, 6)), attention(encoder_out, torch.randn(4, 6)))


def test_decoders_use_the_previous_state_and_dropout_only_in_training(q3_decoder, q3_attention):
    word, h, c, encoder_out = _inputs(4, 9, 12, 10)
    for model in [q3_decoder.Decoder(30, 8, 10, 12, dropout=0.5),
                  q3_attention.DecoderWithAttention(30, 8, 10, 12, attention_dim=5, dropout=0.5)]:
        model.eval()
        scores, _, _ = model(word, h, c, encoder_out)
        scores2, _, _ = model(word, h + 1, c, encoder_out)
        assert not torch.allclose(scores, scores2), f"{type(model).__name__} ignores the hidden state"
        torch.testing.assert_close(model(word, h, c, encoder_out)[0], scores)
        model.train()
        assert not torch.allclose(model(word, h, c, encoder_out)[0], model(word, h, c, encoder_out)[0])


def test_gradients_reach_every_parameter(q3_attention):
    model = q3_attention.DecoderWithAttention(30, 8, 10, 12, attention_dim=5)
    word, h, c, encoder_out = _inputs(3, 9, 12, 10)
    scores, h, c = model(word, h, c, encoder_out)
    (F.cross_entropy(scores, torch.randint(0, 30, (3,))) + h.sum() + c.sum()).backward()
    unused = {"init_h.weight", "init_h.bias", "init_c.weight", "init_c.bias"}  # used by init_hidden_state only
    for name, parameter in model.named_parameters():
        if name not in unused:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_skeleton_stubs_raise_not_implemented():
    decoder = load_module(ASSIGNMENT, "decoder.py").Decoder(30, 8, 10, 12)
    with pytest.raises(NotImplementedError, match="Decoder.forward is not implemented yet"):
        decoder(*_inputs(2, 9, 12, 10))
    attention_module = load_module(ASSIGNMENT, "decoder_with_attention.py")
    with pytest.raises(NotImplementedError, match="Attention.forward is not implemented yet"):
        attention_module.Attention(12, 10, 5)(torch.randn(2, 9, 12), torch.randn(2, 10))
    with pytest.raises(NotImplementedError, match="DecoderWithAttention.forward is not implemented yet"):
        attention_module.DecoderWithAttention(30, 8, 10, 12, 5)(*_inputs(2, 9, 12, 10))


def test_attention_without_its_softmax_module_is_told_not_silently_penalised(q3_attention):
    """--attention_reg reads the weights off Attention.softmax: an Attention that calls torch.softmax
    instead gets an error that says so, not a constant penalty."""
    import torch.nn as nn

    from autograder.submission import load_module

    train = load_module(SOLUTION, "train.py")
    model = q3_attention.DecoderWithAttention(vocab_size=12, embed_dim=8, decoder_dim=8, encoder_dim=6,
                                              attention_dim=5, dropout=0.0)

    class Unhooked(nn.Softmax):  # computes the same weights, as torch.softmax would: no module call, no hook
        def __call__(self, scores):
            return self.forward(scores)

    model.attention.softmax = Unhooked(dim=model.attention.softmax.dim)
    batches = [(torch.rand(2, 4, 6), torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]]), torch.tensor([4, 3]))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="never called self.softmax"):
        train.train_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), 5.0, 1, attention_reg=1.0)
