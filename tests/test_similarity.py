"""The similarity report on a small class: independent correct solutions written differently, a
pair copied from each other (renamed, reordered), a copy of the reference, the skeleton alone,
a symbolic link and two unreadable zips; and a class where half the students copied the reference."""

import ast
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from autograder import similarity
from autograder.__main__ import main
from tests.conftest import ASSIGNMENT, SOLUTION

GRADED = ("q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py")

# Three students who solved everything correctly and independently, each in their own way. Keys
# are the functions whose stub is replaced ("YOUR CODE HERE" + raise NotImplementedError).
ALICE = {
    # h2-q2.py
    "__init__": """
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(in_channels=16, out_channels=32, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(1152, 600)
        self.fc2 = nn.Linear(600, 120)
        self.fc3 = nn.Linear(120, 10)
        self.drop = nn.Dropout(p=dropout_prob)
        """,
    "CNN.forward": """
        out = self.pool(torch.relu(self.conv1(x)))  # 16 x 14 x 14
        out = self.pool(torch.relu(self.conv2(out)))  # 32 x 6 x 6
        out = out.view(out.size(0), -1)
        out = self.drop(torch.relu(self.fc1(out)))
        out = torch.relu(self.fc2(out))
        out = self.fc3(out)
        return F.log_softmax(out, dim=-1)
        """,
    "train_batch": """
        model.train()
        optimizer.zero_grad()
        predictions = model(X)
        batch_loss = criterion(predictions, y)
        batch_loss.backward()
        optimizer.step()
        return float(batch_loss)
        """,
    # decoder.py
    "Decoder.forward": """
        # note to self: </pre><script>alert("xss")</script>
        state = (decoder_hidden_state, decoder_cell_state)
        h_new, c_new = self.decode_step(self.embedding(word), state)
        return self.fc(self.dropout(h_new)), h_new, c_new
        """,
    # decoder_with_attention.py
    "Attention.forward": """
        projected_image = self.encoder_att(encoder_out)
        projected_state = self.decoder_att(decoder_hidden)[:, None, :]
        e = self.full_att(self.relu(projected_image + projected_state))[..., 0]
        alpha = self.softmax(e)
        return torch.bmm(alpha.unsqueeze(1), encoder_out).squeeze(1)
        """,
    "DecoderWithAttention.forward": """
        context = self.attention(encoder_out, decoder_hidden_state)
        inputs = torch.cat((self.embedding(word), context), dim=-1)
        h_next, c_next = self.decode_step(inputs, (decoder_hidden_state, decoder_cell_state))
        return self.fc(self.dropout(h_next)), h_next, c_next
        """,
    # q1.ipynb
    "conv_output_size": "return 1 + (input_size - kernel_size + 2 * padding) // stride",
    "pool_output_size": "return (input_size - kernel_size) // stride + 1",
    "conv_parameters": """
        weights = in_channels * kernel_size ** 2 * out_channels
        return weights + out_channels
        """,
    "linear_parameters": "return in_features * out_features + out_features",
    "cnn_counts": """
        conv_side = conv_output_size(28, 5)
        pool_side = pool_output_size(conv_side, 4, 2)
        result = {}
        result["conv"] = conv_parameters(3, 8, 5)
        result["pool"] = 0
        result["output"] = linear_parameters(8 * pool_side ** 2, 10)
        result["total"] = result["conv"] + result["pool"] + result["output"]
        return result
        """,
    "mlp_counts": """
        hidden = linear_parameters(3 * 28 * 28, 100)
        output = linear_parameters(100, 10)
        return {"hidden": hidden, "output": output, "total": hidden + output}
        """,
    "attention_probabilities": """
        Q = X @ W_Q
        K = X @ W_K
        return torch.softmax(Q @ K.T, dim=-1)
        """,
    "bilinear_matrix": "return torch.matmul(W_Q, W_K.t())",
    "equivalent_head": """
        W_Q2 = W_Q @ B
        W_K2 = W_K @ torch.inverse(B).T
        return W_Q2, W_K2
        """,
}

BOB = {
    "__init__": """
        self.conv1 = nn.Conv2d(1, 16, (3, 3), padding=(1, 1))
        self.conv2 = nn.Conv2d(16, 32, (3, 3), padding=0)
        self.fc1 = nn.Linear(32 * 6 * 6, 600)
        self.dropout = nn.Dropout(dropout_prob)
        self.fc2 = nn.Linear(600, 120)
        self.fc3 = nn.Linear(120, 10)
        """,
    "CNN.forward": """
        batch_size = x.shape[0]
        h1 = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h2 = F.max_pool2d(F.relu(self.conv2(h1)), 2)
        flat = torch.reshape(h2, (batch_size, 1152))
        hidden = F.relu(self.fc1(flat))
        hidden = F.relu(self.fc2(self.dropout(hidden)))
        return torch.log_softmax(self.fc3(hidden), 1)
        """,
    "train_batch": """
        loss = criterion(model.forward(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach().item()
        """,
    "Decoder.forward": """
        embedded = self.embedding(word)
        new_h, new_c = self.decode_step(embedded, (decoder_hidden_state, decoder_cell_state))
        dropped = self.dropout(new_h)
        return self.fc(dropped), new_h, new_c
        """,
    "Attention.forward": """
        batch, num_locations, _ = encoder_out.shape
        image_part = self.encoder_att(encoder_out)
        state_part = self.decoder_att(decoder_hidden).unsqueeze(1).expand(-1, num_locations, -1)
        scores = self.full_att(self.relu(image_part + state_part)).view(batch, num_locations)
        weights = self.softmax(scores)
        return (weights[:, :, None] * encoder_out).sum(1)
        """,
    "DecoderWithAttention.forward": """
        embedded = self.embedding(word)
        attended = self.attention(encoder_out, decoder_hidden_state)
        lstm_in = torch.cat([embedded, attended], 1)
        new_h, new_c = self.decode_step(lstm_in, (decoder_hidden_state, decoder_cell_state))
        return self.fc(self.dropout(new_h)), new_h, new_c
        """,
    "conv_output_size": """
        out = input_size + 2 * padding - kernel_size
        return out // stride + 1
        """,
    "pool_output_size": "return conv_output_size(input_size, kernel_size, stride=stride, padding=0)",
    "conv_parameters": "return (in_channels * kernel_size * kernel_size + 1) * out_channels",
    "linear_parameters": "return (in_features + 1) * out_features",
    "cnn_counts": """
        after_conv = conv_output_size(28, kernel_size=5)
        after_pool = pool_output_size(after_conv, kernel_size=4, stride=2)
        conv = conv_parameters(3, 8, 5)
        output = linear_parameters(after_pool * after_pool * 8, 10)
        return {"conv": conv, "pool": 0, "output": output, "total": conv + output}
        """,
    "mlp_counts": """
        counts = dict(hidden=linear_parameters(2352, 100), output=linear_parameters(100, 10))
        counts["total"] = counts["hidden"] + counts["output"]
        return counts
        """,
    "attention_probabilities": """
        queries = torch.mm(X, W_Q)
        keys = torch.mm(X, W_K)
        logits = torch.mm(queries, keys.t())
        return torch.nn.functional.softmax(logits, dim=1)
        """,
    "bilinear_matrix": "return W_Q.matmul(W_K.transpose(0, 1))",
    "equivalent_head": """
        B_inv = torch.linalg.inv(B)
        return W_Q.mm(B), W_K.mm(B_inv.t())
        """,
}

CAROL = {
    "__init__": """
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=1)
        self.classifier = nn.Sequential(
            nn.Linear(1152, 600), nn.ReLU(), nn.Dropout(dropout_prob),
            nn.Linear(600, 120), nn.ReLU(),
            nn.Linear(120, 10),
        )
        """,
    "CNN.forward": """
        for conv in (self.conv1, self.conv2):
            x = F.max_pool2d(F.relu(conv(x)), kernel_size=2)
        x = torch.flatten(x, 1)
        return F.log_softmax(self.classifier(x), dim=1)
        """,
    "train_batch": """
        optimizer.zero_grad()
        output = model(X)
        loss = criterion(output, y)
        loss.backward()
        optimizer.step()
        return loss.item()
        """,
    "Decoder.forward": """
        h, c = self.decode_step(self.embedding(word), (decoder_hidden_state, decoder_cell_state))
        scores = self.fc(self.dropout(h))
        return scores, h, c
        """,
    "Attention.forward": """
        att = self.full_att(self.relu(self.encoder_att(encoder_out) + self.decoder_att(decoder_hidden).unsqueeze(1)))
        alpha = self.softmax(att.squeeze(-1))
        context = torch.einsum("bl,ble->be", alpha, encoder_out)
        return context
        """,
    "DecoderWithAttention.forward": """
        context = self.attention(encoder_out, decoder_hidden_state)
        x = torch.cat([self.embedding(word), context], dim=1)
        h, c = self.decode_step(x, (decoder_hidden_state, decoder_cell_state))
        scores = self.fc(self.dropout(h))
        return scores, h, c
        """,
    "conv_output_size": "return int((input_size - kernel_size + 2 * padding) / stride) + 1",
    "pool_output_size": "return int((input_size - kernel_size) / stride) + 1",
    "conv_parameters": """
        per_filter = kernel_size * kernel_size * in_channels
        return out_channels * per_filter + out_channels
        """,
    "linear_parameters": "return in_features * out_features + out_features",
    "cnn_counts": """
        side = pool_output_size(conv_output_size(28, 5), 4, 2)
        conv = conv_parameters(3, 8, 5)
        out = linear_parameters(8 * side * side, 10)
        return {"conv": conv, "pool": 0, "output": out, "total": conv + 0 + out}
        """,
    "mlp_counts": """
        h = linear_parameters(28 * 28 * 3, 100)
        o = linear_parameters(100, 10)
        return {"hidden": h, "output": o, "total": h + o}
        """,
    "attention_probabilities": """
        scores = X @ W_Q @ W_K.T @ X.T
        return scores.softmax(dim=1)
        """,
    "bilinear_matrix": "return W_Q @ W_K.transpose(0, 1)",
    "equivalent_head": "return W_Q @ B, W_K @ torch.linalg.inv(B.T)",
}

# Dave copied Alice: every variable renamed, comments reworded, functions and methods reordered.
DAVE_RENAMES = {"out": "z", "predictions": "logits", "batch_loss": "the_loss", "state": "hc",
                "h_new": "hidden", "c_new": "cell", "projected_image": "enc_proj", "projected_state": "dec_proj",
                "e": "energy", "alpha": "weights", "context": "ctx", "inputs": "step_input", "h_next": "h1",
                "c_next": "c1", "weights": "n_weights", "conv_side": "s1", "pool_side": "s2", "result": "res",
                "hidden": "hid", "output": "outp", "Q": "queries", "K": "keys", "W_Q2": "new_q", "W_K2": "new_k",
                "pool": "maxpool", "drop": "do", "note to self": "TODO remove"}
DAVE_MOVES = {"h2-q2.py": [("train_batch", "CNN")],
              "decoder.py": [("Decoder.forward", "Decoder.init_hidden_state")],
              "decoder_with_attention.py": [("DecoderWithAttention.forward", "DecoderWithAttention.__init__"),
                                            ("Attention.forward", "Attention.__init__")],
              "q1.ipynb": [("equivalent_head", "attention_probabilities"), ("cnn_counts", "conv_parameters"),
                           ("pool_output_size", "conv_output_size")]}


def _rename(body, renames):
    import re

    for old, new in sorted(renames.items(), key=lambda kv: -len(kv[0])):
        body = re.sub(rf"(?<![\w.\"']){re.escape(old)}\b(?![\"'=])", new, body)
    return body


def fill(source, bodies):
    """`source` (a skeleton file or cell) with each stub replaced by the body of its function:
    bodies[qualified name] or bodies[name]."""
    lines, out, scope = source.splitlines(keepends=True), [], []
    for line in lines:
        stripped = line.lstrip()
        indent = line[:len(line) - len(stripped)]
        if stripped.startswith(("class ", "def ")):
            scope = [s for s in scope if len(s[0]) < len(indent)] + [(indent, stripped.split()[1].split("(")[0])]
        if stripped.startswith("# YOUR CODE HERE"):
            continue
        if stripped.startswith("raise NotImplementedError("):
            qualified = ".".join(name for _, name in scope)
            body = bodies.get(qualified, bodies.get(scope[-1][1]))
            out.append(textwrap.indent(textwrap.dedent(body).strip() + "\n", indent))
            continue
        out.append(line)
    return "".join(out)


def move(source, name, before):
    """`source` with the definition `name` (qualified: Class.method) moved just above `before`."""
    def find(qualified):
        node = ast.parse(source)
        for part in qualified.split("."):
            node = next(n for n in node.body if getattr(n, "name", None) == part)
        return node.lineno - 1, node.end_lineno

    lines = source.splitlines(keepends=True)
    start, end = find(name)
    block = lines[start:end] + ["\n"]
    rest = lines[:start] + lines[end:]
    source = "".join(rest)
    target, _ = find(before)
    rest.insert(target, "".join(block))
    return "".join(rest)


def _notebook_cells(notebook, change):
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = change(source, cell["metadata"]["nbgrader"]["grade_id"])
    return notebook


def write_student(folder, bodies, renames=None, moves=None):
    folder.mkdir(parents=True)
    if renames:
        bodies = {name: _rename(body, renames) for name, body in bodies.items()}
    for filename in GRADED:
        if filename == "q1.ipynb":
            def change(source, _):
                source = fill(source, bodies)
                for name, before in (moves or {}).get(filename, []):
                    if f"def {name}(" in source and f"def {before}(" in source:
                        source = move(source, name, before)
                return source

            notebook = _notebook_cells(json.loads((ASSIGNMENT / filename).read_text()), change)
            (folder / filename).write_text(json.dumps(notebook, indent=1))
        else:
            source = fill((ASSIGNMENT / filename).read_text(), bodies)
            for name, before in (moves or {}).get(filename, []):
                source = move(source, name, before)
            compile(source, filename, "exec")
            (folder / filename).write_text(source)


def write_reference_copy(folder):
    """Erin's: the reference as leaked, solution markers and trailing comments removed."""
    import re

    folder.mkdir(parents=True)

    def clean(source, *_):
        return "".join(re.sub(r"\s+# .*$", "", line) for line in source.splitlines(keepends=True)
                       if "### " not in line)

    for filename in GRADED:
        if filename == "q1.ipynb":
            notebook = _notebook_cells(json.loads((SOLUTION / filename).read_text()), clean)
            (folder / filename).write_text(json.dumps(notebook, indent=1))
        else:
            (folder / filename).write_text(clean((SOLUTION / filename).read_text()))


def build_class(root):
    root.mkdir()
    write_student(root / "alice", ALICE)
    write_student(root / "bob-src", BOB)
    with zipfile.ZipFile(root / "bob.zip", "w") as zipped:  # a zip with a top folder, as students make them
        for path in (root / "bob-src").iterdir():
            zipped.write(path, f"hw2/{path.name}")
    shutil.rmtree(root / "bob-src")
    write_student(root / "carol", CAROL)
    write_student(root / "dave", ALICE, DAVE_RENAMES, DAVE_MOVES)
    write_reference_copy(root / "erin")
    shutil.copytree(ASSIGNMENT, root / "frank", ignore=shutil.ignore_patterns("__pycache__"))  # did nothing
    shutil.copytree(ASSIGNMENT, root / "heidi", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "heidi" / "decoder.py").unlink()
    os.symlink(root / "alice" / "decoder.py", root / "heidi" / "decoder.py")  # refused: never read through a link
    with zipfile.ZipFile(root / "mallory.zip", "w") as zipped:
        zipped.write(ASSIGNMENT / "h2-q2.py", "h2-q2.py")
        link = zipfile.ZipInfo("decoder.py")
        link.external_attr = (0o120777 << 16)
        zipped.writestr(link, "/etc/passwd")
    (root / "corrupt.zip").write_bytes(b"PK\x03\x04 not really a zip")
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = build_class(tmp_path_factory.mktemp("class") / "submissions")
    out = root.parent / "similarity"
    start = time.perf_counter()
    result = similarity.similarity(root, out, log=lambda *_: None)
    result.wall_seconds = time.perf_counter() - start
    return result, out


def _pair(report, a, b):
    return next(p for p in report.pairs if {p.a, p.b} == {a, b})


INDEPENDENT = ("alice", "bob", "carol", "erin")


def test_the_copied_pair_ranks_first_and_is_flagged(report):
    report, _ = report
    first = report.pairs[0]
    assert {first.a, first.b} == {"alice", "dave"} and first.flagged
    assert [(p.a, p.b) for p in report.flagged] == [(first.a, first.b)]
    assert first.z >= similarity.FLAG_Z and first.score >= similarity.FLAG_SCORE


def test_independent_correct_solutions_are_not_flagged(report):
    report, _ = report
    for i, a in enumerate(INDEPENDENT):
        for b in INDEPENDENT[i + 1:]:
            pair = _pair(report, a, b)
            assert not pair.flagged and pair.score < similarity.FLAG_SCORE, (a, b, pair.score, pair.z)
            assert pair.z < similarity.FLAG_Z


def test_a_copy_of_the_reference_is_reported_as_such(report):
    report, out = report
    close = {p.a: p for p in report.close_to_reference}
    assert set(close) == {"erin"} and close["erin"].score > 0.9
    with open(out / "reference.csv") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["erin"]["close_to_reference"] == "yes"
    assert all(rows[s]["close_to_reference"] == "" for s in ("alice", "bob", "carol", "dave", "frank"))
    assert next(iter(rows)) == "erin"  # most similar first


def test_the_skeleton_alone_scores_zero(report):
    report, _ = report
    for idle in ("frank", "heidi"):
        assert report.authors[idle].own_code == 0
        assert all(p.score == 0 for p in report.pairs if idle in (p.a, p.b))
        assert next(p for p in report.reference if p.a == idle).score == 0
    assert _pair(report, "frank", "heidi").score == 0


def test_unreadable_submissions_are_reported_and_the_rest_goes_on(report):
    report, out = report
    assert set(report.students) == {"alice", "bob", "carol", "dave", "erin", "frank", "heidi"}
    problems = "\n".join(report.problems)
    assert "mallory: could not be compared" in problems and "symbolic link" in problems
    assert "corrupt: could not be compared" in problems
    assert "heidi: decoder.py not compared" in problems
    page = (out / "similarity.html").read_text()
    assert "mallory: could not be compared" in page and "corrupt: could not be compared" in page


def test_every_code_cell_of_the_notebook_is_compared_whatever_its_marks(report, tmp_path):
    """The skeleton's cells are boilerplate; the nbgrader marks are the student's to edit, so a copy
    whose marks were stripped (or made nonsense) reads the same."""
    import json

    from autograder.similarity import notebook_code

    report, _ = report
    text = report.authors["alice"].texts["q1.ipynb"]
    assert text.startswith("# --- q1.ipynb cell ") and "pool_side ** 2" in text
    assert set(report.authors["alice"].texts) == set(GRADED)  # the graded files only: not train.py, utils.py
    notebook = json.loads((SOLUTION / "q1.ipynb").read_text())
    stripped = json.loads(json.dumps(notebook))
    for number, cell in enumerate(stripped["cells"]):
        cell["metadata"] = [] if number % 2 else {}
    code = lambda nb: [line for line in notebook_code(json.dumps(nb).encode()).splitlines()  # noqa: E731
                       if not line.startswith("# --- ")]
    assert code(stripped) == code(notebook)


def test_csv_lists_every_pair_most_similar_first(report):
    report, out = report
    with open(out / "similarity.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 * 6 // 2
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"alice", "dave"} and rows[0]["flagged"] == "yes"
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0]["most_similar_file"] in GRADED


def test_html_is_self_contained_and_escapes_student_code(report):
    report, out = report
    page = (out / "similarity.html").read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert" in page
    assert "<mark class='a'>" in page and "FLAGGED" in page
    assert "close to the reference" in page and "may be a copy of leaked solutions" in page
    assert "src=" not in page and "<link" not in page and "http" not in page


def test_wall_time(report):
    report, _ = report
    assert report.wall_seconds < 20


def test_command_line(report, tmp_path, capsys):
    _, out = report
    main(["similarity", str(out.parent / "submissions"), "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    assert "flagged: alice and dave" in printed and "close to the reference: erin" in printed
    assert "mallory: could not be compared" in printed
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"similarity.html", "similarity.csv", "reference.csv"}
    with pytest.raises(SystemExit) as stop:
        main(["similarity", str(tmp_path / "nowhere")])
    assert str(stop.value).startswith("error: ") and "nowhere" in str(stop.value)


def test_the_side_by_side_view_fits_the_page(report):
    """Each pane takes half the page whatever its code (a long line neither widens it nor is cut) and
    wraps; nothing has a fixed width in pixels."""
    _, out = report
    page = (out / "similarity.html").read_text()
    assert ".sbs{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr)" in page
    assert "white-space:pre-wrap" in page and not re.search(r"max-width:\s*\d+px", page)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Six students: three independent correct solutions and three exact copies of solution/."""
    root = tmp_path_factory.mktemp("copies") / "submissions"
    root.mkdir()
    for name, bodies in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        write_student(root / name, bodies)
    for name in COPIES:
        shutil.copytree(SOLUTION, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = root.parent / "similarity"
    return similarity.similarity(root, out, log=lambda *_: None), out


COPIES = ("xavier", "yann", "zoe")


def test_near_identical_copies_are_flagged_whatever_the_class_level(copies):
    """Half the class copied: the median and spread rise so far that the copies do not stand out
    (z < FLAG_Z), yet each pair of them and each of them against the reference is flagged."""
    report, out = copies
    flagged = {frozenset((p.a, p.b)): p for p in report.flagged}
    assert set(flagged) == {frozenset((a, b)) for i, a in enumerate(COPIES) for b in COPIES[i + 1:]}
    for pair in flagged.values():
        assert pair.score >= similarity.NEAR_IDENTICAL and pair.why == similarity.NEAR_IDENTICAL_WHY
        assert pair.z < similarity.FLAG_Z, "the class this test needs: one where the z rule alone flags nothing"
    close = {p.a: p for p in report.close_to_reference}
    assert set(close) == set(COPIES) and all(p.why == similarity.NEAR_IDENTICAL_WHY for p in close.values())
    with open(out / "similarity.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["why_flagged"] for r in rows[:3]] == [similarity.NEAR_IDENTICAL_WHY] * 3
    assert all(r["flagged"] == "" and r["why_flagged"] == "" for r in rows[3:])
    with open(out / "reference.csv") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert {s for s, row in rows.items() if row["close_to_reference"] == "yes"} == set(COPIES)
    page = (out / "similarity.html").read_text()
    assert "3 pairs flagged" in page and "3 students close to the reference" in page


def test_one_short_function_written_alike_is_not_a_flag(tmp_path):
    """Two students who each wrote only train_batch, the obvious way: the same code (score 1), but too
    little of it (under MIN_SHARED_TOKENS) to be a reason to read."""
    root = tmp_path / "submissions"
    stubs = {name: 'raise NotImplementedError("not implemented yet")' for name in ALICE}
    write_student(root / "pat", dict(stubs, train_batch=CAROL["train_batch"]))
    write_student(root / "quinn", dict(stubs, train_batch=CAROL["train_batch"].replace("output", "out")))
    write_student(root / "alice", ALICE)
    report = similarity.analyse(root, log=lambda *_: None)
    pair = _pair(report, "pat", "quinn")
    assert pair.score == 1.0 and pair.shared_tokens < similarity.MIN_SHARED_TOKENS
    assert not pair.flagged and not report.flagged


def test_the_csvs_are_utf8_whatever_the_locale(tmp_path):
    """Students' names keep letters of any script (batch.safe_name): the CSVs are written in UTF-8 even
    where the locale's encoding cannot write them (a C locale here; cp1252 on a Windows laptop), as
    similarity.html is, rather than the command failing after the whole comparison."""
    code = f"""
from pathlib import Path
from autograder import similarity as s
a, b = "Jos\\u00e9", "\\u674e"
pair = s.Pair(a, b, 0.9, {{"decoder.py": (0.9, 200.0, 200.0, 220.0, 220.0)}}, 5.0, s.NEAR_IDENTICAL_WHY)
report = s.Report("x", [a, b], [pair], [s.Pair(b, s.REFERENCE, 0.2, {{}})], 0.2, 0.05, [], {{}})
s.write_csvs(report, Path({str(tmp_path)!r}))
"""
    env = dict(os.environ, PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", LC_ALL="C")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    with open(tmp_path / "similarity.csv", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert (row["student_a"], row["student_b"], row["why_flagged"]) == ("Jos\u00e9", "\u674e", "near-identical")
    with open(tmp_path / "reference.csv", encoding="utf-8") as f:
        assert next(csv.DictReader(f))["student"] == "\u674e"
