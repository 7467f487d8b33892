"""Homework 2, Question 3.1b: an LSTM caption decoder with additive attention.

You complete `Attention.forward` and `DecoderWithAttention.forward`. Everything else is
provided. Shapes use: batch, num_locations (positions of the encoder's feature grid, 256 by
default), encoder_dim (1280 by default), attention_dim, embed_dim, decoder_dim, vocab_size.
Your code must work for any of these sizes.
"""

import torch
import torch.nn as nn


class Attention(nn.Module):
    """Additive attention over the image locations (as in Show, Attend and Tell)."""

    def __init__(self, encoder_dim, decoder_dim, attention_dim):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)  # projects the image features
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)  # projects the decoder's hidden state
        self.full_att = nn.Linear(attention_dim, 1)  # one score per location
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)  # over the locations

    def forward(self, encoder_out, decoder_hidden):
        """The attention-weighted encoding of the image for the current decoder state.

        encoder_out: (batch, num_locations, encoder_dim)
        decoder_hidden: (batch, decoder_dim), the previous hidden state h
        Returns: attention_weighted_encoding, (batch, encoder_dim): the sum over locations of
            the encoder features weighted by alpha, where alpha (batch, num_locations) is
            self.softmax of the scores
                full_att(relu(encoder_att(encoder_out) + decoder_att(decoder_hidden)))
            (the decoder projection is added to every location). No loop over the batch or
            the locations; use self.softmax for alpha (the attention figures read it there).
        """
        # YOUR CODE HERE (~ 5 lines)
        raise NotImplementedError("Attention.forward is not implemented yet")


class DecoderWithAttention(nn.Module):
    def __init__(self, vocab_size, embed_dim, decoder_dim, encoder_dim, attention_dim, dropout=0.5):
        super().__init__()
        self.vocab_size = vocab_size
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)  # attention network
        self.embedding = nn.Embedding(vocab_size, embed_dim)  # word index -> word vector
        self.dropout = nn.Dropout(p=dropout)  # on the hidden state, before the output layer
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim)  # input: [word vector; context]
        self.init_h = nn.Linear(encoder_dim, decoder_dim)  # initial hidden state from the image
        self.init_c = nn.Linear(encoder_dim, decoder_dim)  # initial cell state from the image
        self.fc = nn.Linear(decoder_dim, vocab_size)  # hidden state -> scores over the vocabulary

    def init_hidden_state(self, encoder_out):
        """Initial LSTM state from the mean image feature.

        encoder_out: (batch, num_locations, encoder_dim)
        Returns: h, c, each (batch, decoder_dim)
        """
        mean_encoder_out = encoder_out.mean(dim=1)  # (batch, encoder_dim)
        return self.init_h(mean_encoder_out), self.init_c(mean_encoder_out)

    def forward(self, word, decoder_hidden_state, decoder_cell_state, encoder_out):
        """One decoding step with attention.

        word: int64 (batch,), index of the previous word
        decoder_hidden_state, decoder_cell_state: (batch, decoder_dim), the previous LSTM state
        encoder_out: (batch, num_locations, encoder_dim)
        Returns: scores, h, c
            scores: (batch, vocab_size), unnormalised scores of the next word
                    (dropout on the new hidden state, then self.fc)
            h, c: (batch, decoder_dim), the new LSTM state
        Steps: embed the word; attend to the image with the *previous* hidden state; run
        self.decode_step on the concatenation [word embedding, attention-weighted encoding]
        (in that order, along the feature dimension); score the new hidden state.
        """
        # YOUR CODE HERE (~ 5 lines)
        raise NotImplementedError("DecoderWithAttention.forward is not implemented yet")
