"""Homework 2, Question 3.1a: an LSTM caption decoder without attention.

You complete `Decoder.forward`: one time step of the decoder. Everything else is provided.
Shapes use: batch (images in the batch), num_locations (positions of the encoder's feature
grid, 16x16 = 256 by default), encoder_dim (features per location, 1280 by default),
embed_dim, decoder_dim, vocab_size.
"""

import torch
import torch.nn as nn


class Decoder(nn.Module):
    def __init__(self, vocab_size, embed_dim, decoder_dim, encoder_dim, dropout=0.5):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)  # word index -> word vector
        self.dropout = nn.Dropout(p=dropout)  # on the hidden state, before the output layer
        self.decode_step = nn.LSTMCell(embed_dim, decoder_dim)  # one step of the LSTM
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
        """One decoding step: read the previous word, update the LSTM, score the next word.

        word: int64 (batch,), index of the previous word (the start token at the first step)
        decoder_hidden_state: (batch, decoder_dim), h of the previous step
        decoder_cell_state: (batch, decoder_dim), c of the previous step
        encoder_out: (batch, num_locations, encoder_dim), image features (this decoder sees the
            image only through its initial state, so it does not need them here)
        Returns: scores, h, c
            scores: (batch, vocab_size), unnormalised scores of the next word
                    (dropout on the new hidden state, then self.fc)
            h, c: (batch, decoder_dim), the new LSTM state
        Use the provided layers: self.embedding, self.decode_step, self.dropout, self.fc.
        """
        ### BEGIN SOLUTION (~ 4 lines)
        embeddings = self.embedding(word)  # (batch, embed_dim)
        h, c = self.decode_step(embeddings, (decoder_hidden_state, decoder_cell_state))  # (batch, decoder_dim) each
        scores = self.fc(self.dropout(h))  # (batch, vocab_size)
        return scores, h, c
        ### END SOLUTION
