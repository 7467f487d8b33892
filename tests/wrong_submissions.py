"""Plausible wrong submissions: each is the reference with one mistake students make.

Each entry: (name, file, [(reference text, replacement), ...], rubric test that must catch it,
words its message must contain). The reference text must occur exactly once in the file, so
that a change of the reference that breaks an entry is noticed. Add an entry whenever a new
way to be wrong gets full marks.
"""

ATTENTION_SCORES = "        att = self.full_att(self.relu(att1 + att2.unsqueeze(1))).squeeze(2)  # (batch, num_locations)\n"

WRONG_SUBMISSIONS = [
    # ---- 1: the notebook ------------------------------------------------------------------------
    ("convolution output size without the +1", "q1.ipynb",
     [("// stride + 1", "// stride")], "1.1-output-sizes", ["conv_output_size(28, 5) returned 23; expected 24"]),
    ("fully connected layer without biases", "q1.ipynb",
     [("return out_features * (in_features + 1)", "return out_features * in_features")],
     "1.1-parameter-counts", ["linear_parameters(968, 10) returned 9680; expected 9690"]),
    ("one channel instead of three", "q1.ipynb",
     [("linear_parameters(28 * 28 * 3, 100)", "linear_parameters(28 * 28, 100)")],
     "1.2-parameter-counts", ["hidden should be 235,300"]),
    ("softmax over the queries", "q1.ipynb",
     [("torch.softmax(scores, dim=1)", "torch.softmax(scores, dim=0)")],
     "1.3-attention-probabilities", ["rows do not sum to 1"]),
    ("A = W_K W_Q^T", "q1.ipynb",
     [("return W_Q @ W_K.T", "return W_K @ W_Q.T")], "1.3-low-rank", ["differ from the expected"]),
    ("B^-1 instead of B^-T", "q1.ipynb",
     [("W_K @ torch.linalg.inv(B).T", "W_K @ torch.linalg.inv(B)")], "1.3-equivalent-heads", ["W_Q2 W_K2^T"]),
    # ---- 2.2: CNN ----------------------------------------------------------------------------
    # a loop whose operations do not grow with the batch: under 3 times the statement's CPU time on a batch of
    # 64, so only the count against the statement's (10 times at most) catches it
    ("conv1 as a Python loop over its 784 output pixels", "h2-q2.py",
     [("        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)  # (batch, 16, 14, 14)\n",
       "        p = F.pad(x, (1, 1, 1, 1))\n"
       "        out = x.new_empty(len(x), 16, 28, 28)\n"
       "        w = self.conv1.weight.flatten(1).t()  # (9, 16)\n"
       "        for i in range(28):\n"
       "            for j in range(28):\n"
       "                out[:, :, i, j] = p[:, :, i:i + 3, j:j + 3].flatten(1) @ w + self.conv1.bias\n"
       "        x = F.max_pool2d(F.relu(out), kernel_size=2, stride=2)\n")],
     "2.2-speed", ["tensor operations on a batch of 16", "loop over pixels"]),
    ("attention scores as a Python loop over the attention units", "decoder_with_attention.py",
     [(ATTENTION_SCORES,
       "        att = self.full_att.bias + sum(self.full_att.weight[0, k] * self.relu(att1[:, :, k] + att2[:, None, k])\n"
       "                                       for k in range(att1.shape[-1]))\n")],
     "3.1b-attention-speed", ["tensor operations on a batch of 8 with 16 locations"]),
    ("missing ReLU after conv1", "h2-q2.py",
     [("F.max_pool2d(F.relu(self.conv1(x))", "F.max_pool2d(self.conv1(x)")],
     "2.2-equivalence", ["differ from the expected"]),
    ("softmax instead of log-softmax", "h2-q2.py",
     [("F.log_softmax(self.fc3(x), dim=1)", "F.softmax(self.fc3(x), dim=1)"), ],
     "2.2-log-probabilities", ["sum to 1"]),
    ("log-softmax over the batch", "h2-q2.py",
     [("F.log_softmax(self.fc3(x), dim=1)", "F.log_softmax(self.fc3(x), dim=0)")],
     "2.2-log-probabilities", ["dim=1"]),
    ("dropout after the second hidden layer", "h2-q2.py",
     [("x = self.dropout(F.relu(self.fc1(x)))", "x = F.relu(self.fc1(x))"),
      ("x = F.relu(self.fc2(x))", "x = self.dropout(F.relu(self.fc2(x)))")],
     "2.2-dropout", ["600-unit layer"]),
    ("dropout also in eval mode", "h2-q2.py",
     [("x = self.dropout(F.relu(self.fc1(x)))", "x = F.dropout(F.relu(self.fc1(x)), self.dropout.p, training=True)")],
     "2.2-dropout", ["eval mode"]),
    ("padding on the wrong conv", "h2-q2.py",
     [("nn.Conv2d(1, 16, kernel_size=3, stride=1, padding=1)", "nn.Conv2d(1, 16, kernel_size=3, stride=1, padding=0)"),
      ("nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=0)", "nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1)")],
     "2.2-equivalence", ["padding"]),
    ("average pooling", "h2-q2.py",
     [("x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=2, stride=2)",
       "x = F.avg_pool2d(F.relu(self.conv2(x)), kernel_size=2, stride=2)")],
     "2.2-equivalence", ["max-pooling"]),
    ("hidden layer of 500 units", "h2-q2.py",
     [("nn.Linear(32 * 6 * 6, 600)", "nn.Linear(32 * 6 * 6, 500)"), ("nn.Linear(600, 120)", "nn.Linear(500, 120)")],
     "2.2-architecture", ["769,930"]),
    ("zero_grad between backward and step", "h2-q2.py",
     [("    optimizer.zero_grad()\n    loss = criterion(model(X), y)\n    loss.backward()\n",
       "    loss = criterion(model(X), y)\n    loss.backward()\n    optimizer.zero_grad()\n")],
     "2.2-train-batch", ["not between loss.backward() and optimizer.step()"]),
    ("forward loops over the batch", "h2-q2.py",
     [("        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)  # (batch, 16, 14, 14)\n",
       "        if len(x) > 1:\n            return torch.cat([self.forward(x[i:i + 1]) for i in range(len(x))])\n"
       "        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)\n")],
     "2.2-vectorized", ["loops over the batch"]),
    ("forward loops over the batch with torch.nn.functional", "h2-q2.py",
     [("        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)  # (batch, 16, 14, 14)\n",
       "        x = torch.cat([F.conv2d(x[i:i + 1], self.conv1.weight, self.conv1.bias, padding=1) for i in range(len(x))])\n"
       "        x = F.max_pool2d(F.relu(x), kernel_size=2, stride=2)\n")],
     "2.2-vectorized", ["loops over the batch", "a batch of 16"]),
    ("float64 output", "h2-q2.py",
     [("return F.log_softmax(self.fc3(x), dim=1)", "return F.log_softmax(self.fc3(x), dim=1).double()")],
     "2.2-output-shape", ["dtype torch.float64"]),
    ("train_batch without zero_grad", "h2-q2.py",
     [("    optimizer.zero_grad()\n    loss = criterion(model(X), y)", "    loss = criterion(model(X), y)")],
     "2.2-train-batch", ["zero_grad"]),
    ("train_batch without step", "h2-q2.py",
     [("    optimizer.step()\n    return loss.item()", "    return loss.item()")],
     "2.2-train-batch", ["optimizer.step()"]),
    ("train_batch without backward", "h2-q2.py",
     [("    loss.backward()\n    optimizer.step()", "    optimizer.step()")],
     "2.2-train-batch", ["loss.backward()"]),
    ("train_batch returns a tensor", "h2-q2.py",
     [("    return loss.item()\n    ### END SOLUTION", "    return loss\n    ### END SOLUTION")],
     "2.2-train-batch", ["loss.item()"]),
    # ---- 3.1a: decoder -----------------------------------------------------------------------
    ("decoder ignores the previous state", "decoder.py",
     [("self.decode_step(embeddings, (decoder_hidden_state, decoder_cell_state))", "self.decode_step(embeddings)")],
     "3.1a-state-and-dropout", ["previous hidden state"]),
    ("decoder dropout on the embedding", "decoder.py",
     [("embeddings = self.embedding(word)", "embeddings = self.dropout(self.embedding(word))"),
      ("scores = self.fc(self.dropout(h))", "scores = self.fc(h)")],
     "3.1a-equivalence", ["train mode"]),
    ("decoder returns probabilities", "decoder.py",
     [("scores = self.fc(self.dropout(h))", "scores = self.fc(self.dropout(h)).softmax(dim=1)")],
     "3.1a-equivalence", ["scores in eval mode"]),
    ("decoder returns the old state", "decoder.py",
     [("return scores, h, c", "return scores, decoder_hidden_state, decoder_cell_state")],
     "3.1a-equivalence", ["h in eval mode"]),
    # ---- 3.1b: attention ---------------------------------------------------------------------
    ("softmax over the batch", "decoder_with_attention.py",
     [("alpha = self.softmax(att)", "alpha = torch.softmax(att, dim=0)")],
     "3.1b-attention-weights", ["sum to"]),
    ("attention returns its weights", "decoder_with_attention.py",
     [("return attention_weighted_encoding", "return alpha")],
     "3.1b-attention-shape", ["attention weights"]),
    ("attention multiplies instead of adding", "decoder_with_attention.py",
     [("self.relu(att1 + att2.unsqueeze(1))", "self.relu(att1 * att2.unsqueeze(1))")],
     "3.1b-attention-equivalence", ["differ from the expected"]),
    ("attention concatenates instead of adding", "decoder_with_attention.py",
     [("self.relu(att1 + att2.unsqueeze(1))", "self.relu(torch.cat([att1, att2.unsqueeze(1).expand_as(att1)], dim=2))")],
     "3.1b-attention-shape", ["RuntimeError"]),
    ("attention ignores the hidden state", "decoder_with_attention.py",
     [("self.relu(att1 + att2.unsqueeze(1))", "self.relu(att1)")],
     "3.1b-attention-weights", ["hidden state"]),
    ("attention without ReLU", "decoder_with_attention.py",
     [("self.relu(att1 + att2.unsqueeze(1))", "(att1 + att2.unsqueeze(1))")],
     "3.1b-attention-equivalence", ["differ from the expected"]),
    ("context is the mean feature", "decoder_with_attention.py",
     [("(encoder_out * alpha.unsqueeze(2)).sum(dim=1)", "encoder_out.mean(dim=1)")],
     "3.1b-attention-weights", ["1/num_locations"]),
    ("context is a sum, not a weighted average", "decoder_with_attention.py",
     [("(encoder_out * alpha.unsqueeze(2)).sum(dim=1)", "(encoder_out * (1 + alpha.unsqueeze(2))).sum(dim=1)")],
     "3.1b-attention-weights", ["sum to"]),
    ("attention loops over the locations", "decoder_with_attention.py",
     [("        att1 = self.encoder_att(encoder_out)  # (batch, num_locations, attention_dim)\n",
       "        att1 = torch.stack([self.encoder_att(encoder_out[:, k]) for k in range(encoder_out.shape[1])], dim=1)\n")],
     "3.1b-attention-vectorized", ["loops over the batch or the locations"]),
    ("attention output in float64", "decoder_with_attention.py",
     [("return attention_weighted_encoding", "return attention_weighted_encoding.double()")],
     "3.1b-attention-shape", ["dtype torch.float64"]),
    # ---- 3.1b: decoder with attention ------------------------------------------------------------
    ("context and embedding swapped", "decoder_with_attention.py",
     [("torch.cat([embeddings, context], dim=1)", "torch.cat([context, embeddings], dim=1)")],
     "3.1b-decoder-equivalence", ["differ from the expected"]),
    ("decoder ignores the context", "decoder_with_attention.py",
     [("torch.cat([embeddings, context], dim=1)", "torch.cat([embeddings, torch.zeros_like(context)], dim=1)")],
     "3.1b-decoder-equivalence", ["differ from the expected"]),
    ("decoder ignores its hidden state", "decoder_with_attention.py",
     [("self.decode_step(lstm_input, (decoder_hidden_state, decoder_cell_state))", "self.decode_step(lstm_input)")],
     "3.1b-decoder-equivalence", ["previous cell state c does not change the scores"]),
]


# ---- precision: each mistake loses exactly these tests, and keeps every other one it runs ------------
# (name, file, [(reference text, replacement)], tests it must lose, training tests it must also keep)
FORWARD_2_2 = "        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)  # (batch, 16, 14, 14)\n"
STEP_3_1A = "        embeddings = self.embedding(word)  # (batch, embed_dim)\n"
ALL_3_1A = {"3.1a-output-shape", "3.1a-equivalence", "3.1a-state-and-dropout", "3.1a-gradients", "3.1a-bleu"}
ALL_3_1B = {"3.1b-attention-shape", "3.1b-attention-weights", "3.1b-attention-equivalence",
            "3.1b-attention-vectorized", "3.1b-attention-speed", "3.1b-decoder-shape", "3.1b-decoder-equivalence",
            "3.1b-gradients", "3.1b-bleu"}
PRECISION = [
    ("float64 output", "h2-q2.py",
     [("return F.log_softmax(self.fc3(x), dim=1)", "return F.log_softmax(self.fc3(x), dim=1).double()")],
     {"2.2-output-shape"}, {"2.2-accuracy"}),
    ("missing log_softmax", "h2-q2.py",
     [("return F.log_softmax(self.fc3(x), dim=1)", "return self.fc3(x)")],
     {"2.2-log-probabilities"}, {"2.2-accuracy"}),
    ("log_softmax over the batch (dim 0)", "h2-q2.py",
     [("return F.log_softmax(self.fc3(x), dim=1)", "return F.log_softmax(self.fc3(x), dim=0)")],
     {"2.2-log-probabilities", "2.2-equivalence"}, {"2.2-accuracy"}),
    ("wrong flatten order", "h2-q2.py",
     [("x = x.flatten(start_dim=1)", "x = x.permute(0, 2, 3, 1).flatten(start_dim=1)")],
     {"2.2-equivalence"}, {"2.2-accuracy"}),
    ("dropout after the 120-unit layer", "h2-q2.py",
     [("x = self.dropout(F.relu(self.fc1(x)))", "x = F.relu(self.fc1(x))"),
      ("x = F.relu(self.fc2(x))", "x = self.dropout(F.relu(self.fc2(x)))")],
     {"2.2-dropout"}, {"2.2-accuracy"}),
    ("constant forward", "h2-q2.py",
     [(FORWARD_2_2, "        return torch.full((len(x), 10), -2.302585)\n" + FORWARD_2_2)],
     {"2.2-output-shape", "2.2-log-probabilities", "2.2-equivalence", "2.2-dropout", "2.2-gradients",
      "2.2-vectorized", "2.2-speed", "2.2-accuracy"}, set()),
    ("an import error in decoder_with_attention.py", "decoder_with_attention.py",
     [("import torch.nn as nn\n", "import torch.nn as nn\nimport a_module_that_does_not_exist\n")],
     ALL_3_1B, {"3.1a-bleu"}),
    ("a decoder that returns zeros", "decoder.py",
     [(STEP_3_1A, "        return (torch.zeros(len(word), self.vocab_size), torch.zeros_like(decoder_hidden_state),\n"
                  "                torch.zeros_like(decoder_cell_state))\n" + STEP_3_1A)],
     ALL_3_1A, set()),
    ("a hang in Decoder.forward", "decoder.py",
     [(STEP_3_1A, "        while True:\n            pass\n" + STEP_3_1A)], ALL_3_1A, set()),
    ("a hang at import", "decoder.py",
     [("import torch.nn as nn\n", "import torch.nn as nn\nwhile True:\n    pass\n")], ALL_3_1A, set()),
]
PRECISION += [
    ("Attention returns the weights, not the context", "decoder_with_attention.py",
     [("        return attention_weighted_encoding\n", "        return alpha\n")],
     {"3.1b-attention-shape", "3.1b-attention-weights", "3.1b-attention-equivalence"}, {"3.1b-bleu"}),
    ("train_batch returns the loss tensor", "h2-q2.py",
     [("    return loss.item()\n", "    return loss\n")], {"2.2-train-batch"}, {"2.2-accuracy"}),
    ("F.dropout without training=self.training in the CNN", "h2-q2.py",
     [("x = self.dropout(F.relu(self.fc1(x)))", "x = F.dropout(F.relu(self.fc1(x)), self.dropout.p)")],
     {"2.2-dropout"}, {"2.2-accuracy"}),
    ("F.dropout without training=self.training in the decoder", "decoder.py",
     [("scores = self.fc(self.dropout(h))", "scores = self.fc(torch.nn.functional.dropout(h, self.dropout.p))")],
     {"3.1a-state-and-dropout"}, {"3.1a-bleu"}),
    ("a float64 CNN", "h2-q2.py",
     [(FORWARD_2_2, "        x = x.double()\n" + FORWARD_2_2),
      ("        self.fc3 = nn.Linear(120, 10)  # class scores\n",
       "        self.fc3 = nn.Linear(120, 10)  # class scores\n        self.double()\n")],
     {"2.2-output-shape"}, {"2.2-accuracy"}),
]

# Decoder steps with a mistake that still trains: each loses the cheaper tests that name it, and
# 3.1a-bleu / 3.1b-bleu then ask only that its training learned (autograder/checks/q3.py, LEARNED_MARGIN,
# measured by experiments/bleu_learned_bar.py); the steps that do no work lose the BLEU test too. The
# captions are generated by the statement's step, or for the mistakes the grader knows (q3.STEP_MISTAKES:
# the state's order, the cell's result unpacked as c, h, the context's place) by the grader's copy of the
# student's step, which reads what they learned where the statement's step cannot (0.0000 to 0.0061).
CELL_3_1A = "        h, c = self.decode_step(embeddings, (decoder_hidden_state, decoder_cell_state))"
CELL_3_1B = "        h, c = self.decode_step(lstm_input, (decoder_hidden_state, decoder_cell_state))"
RETURN_STEP = "        return scores, h, c\n"
SCORES_STEP = "        scores = self.fc(self.dropout(h))  # (batch, vocab_size)\n"
DECODER_STEP_MISTAKES = [
    ("the LSTM cell's result unpacked as c, h", "decoder.py",
     [(CELL_3_1A, CELL_3_1A.replace("h, c =", "c, h ="))], {"3.1a-equivalence"}, {"3.1a-bleu"}),
    ("h and c detached", "decoder.py",
     [(RETURN_STEP, "        return scores, h.detach(), c.detach()\n")],
     {"3.1a-equivalence", "3.1a-gradients"}, {"3.1a-bleu"}),
    ("h and c detached, with attention", "decoder_with_attention.py",
     [(RETURN_STEP, "        return scores, h.detach(), c.detach()\n")],
     {"3.1b-decoder-equivalence", "3.1b-gradients"}, {"3.1b-bleu"}),
    # the statement's step cannot read what these learned: the grader's copy of each step does
    ("the state passed to the LSTM cell as (c, h)", "decoder.py",
     [(CELL_3_1A, CELL_3_1A.replace("(decoder_hidden_state, decoder_cell_state)",
                                    "(decoder_cell_state, decoder_hidden_state)"))],
     {"3.1a-equivalence"}, {"3.1a-bleu"}),
    ("the context before the word embedding", "decoder_with_attention.py",
     [("torch.cat([embeddings, context], dim=1)", "torch.cat([context, embeddings], dim=1)")],
     {"3.1b-decoder-equivalence"}, {"3.1b-bleu"}),
    ("the LSTM cell's result unpacked as c, h, with attention", "decoder_with_attention.py",
     [(CELL_3_1B, CELL_3_1B.replace("h, c =", "c, h ="))], {"3.1b-decoder-equivalence"}, {"3.1b-bleu"}),
    ("the scores computed from the previous hidden state", "decoder.py",
     [(SCORES_STEP, "        scores = self.fc(self.dropout(decoder_hidden_state))  # (batch, vocab_size)\n")],
     {"3.1a-equivalence", "3.1a-state-and-dropout"}, {"3.1a-bleu"}),
    ("the scores computed from the previous hidden state, with attention", "decoder_with_attention.py",
     [(SCORES_STEP, "        scores = self.fc(self.dropout(decoder_hidden_state))  # (batch, vocab_size)\n")],
     {"3.1b-decoder-equivalence"}, {"3.1b-bleu"}),
    # no work
    ("scores from the word only, the state returned untouched", "decoder.py",
     [(CELL_3_1A, "        h, c = self.decode_step(embeddings)"),
      (RETURN_STEP, "        return scores, decoder_hidden_state, decoder_cell_state\n")],
     {"3.1a-equivalence", "3.1a-state-and-dropout", "3.1a-bleu"}, set()),
    ("a decoder with attention that returns zeros", "decoder_with_attention.py",
     [("        embeddings = self.embedding(word)  # (batch, embed_dim)\n",
       "        return (torch.zeros(len(word), self.vocab_size), torch.zeros_like(decoder_hidden_state),\n"
       "                torch.zeros_like(decoder_cell_state))\n        embeddings = self.embedding(word)  # (batch, embed_dim)\n")],
     {"3.1b-decoder-shape", "3.1b-decoder-equivalence", "3.1b-gradients", "3.1b-bleu"}, set()),
    ("scores from the word only, the state returned untouched, with attention", "decoder_with_attention.py",
     [("torch.cat([embeddings, context], dim=1)", "torch.cat([embeddings, torch.zeros_like(context)], dim=1)"),
      (CELL_3_1B, "        h, c = self.decode_step(lstm_input)"),
      (RETURN_STEP, "        return scores, decoder_hidden_state, decoder_cell_state\n")],
     {"3.1b-decoder-equivalence", "3.1b-bleu"}, set()),
]
PRECISION += DECODER_STEP_MISTAKES
