"""Similar pairs of students in a class: a report for the instructor to read, never a verdict.

    make similarity SUBMISSIONS=<dir> [OUT=grades/similarity]
    python -m autograder similarity <dir> [--out grades/similarity]

`<dir>` is the folder `make grade-all` takes (one folder or `<student>.zip` per student). Writes,
under OUT (default `grades/similarity`, beside `grades/class`; inside the repository, which
`make clean` empties, rather than beside the submissions, which may be a shared or read-only folder):

  similarity.csv   one row per pair of students: student_a, student_b, score, robust_z, flagged,
                   most_similar_file (and its score), shared_tokens, why_flagged; the most similar pair first
  reference.csv    one row per student: similarity to the reference solution (solution/), robust_z,
                   close_to_reference, closest_file (and its score), shared_tokens, why_flagged
  similarity.html  self-contained: the class's typical level, the most similar pairs (flagged ones
                   marked), the reference table, and each top pair's overlapping code side by side

What is compared: the code each student wrote, i.e. the graded .py files whole and, of q1.ipynb,
the source of every code cell (the skeleton's cells are boilerplate; nbgrader marks decide nothing), each preceded by
a comment naming the cell. Files are read with `read_graded_file` (no links, no special files,
size limits); submissions are opened by `batch.opened`, as grade-all opens them (zips checked: limits, no links, no path escapes). Anything
that cannot be read becomes a "could not be compared" line and the report goes on.

How: copydetect's winnowing fingerprints (as in MOSS): the code is tokenized and filtered
(identifiers become V/F/O, strings S, comments and whitespace dropped, so renaming variables and
re-wording comments change nothing) and every k-gram of NOISE_T filtered characters is hashed.
The provided skeleton (assignment/*.py and the code cells of assignment/q1.ipynb) is copydetect's
boilerplate: its k-grams are removed from every student's fingerprints, so shared provided code
never counts and a student who submits the skeleton has no fingerprints at all (score 0).

Score of a pair: for each graded file, copydetect's `compare_files` gives the share of each
student's fingerprinted tokens (`token_coverage`, after boilerplate) found in the other's file.
The pair's score is the share of the two students' own code, all four files together, that the
other also has: sum over files of (overlap_a + overlap_b) / sum of (coverage_a + coverage_b), i.e.
copydetect's per-file similarities averaged with the files' fingerprint counts as weights. A
file only one of them wrote counts as unshared code, so a student who wrote one short answer
does not look like a copy of everyone; "most similar file" names the file with the highest
per-file score (a partial copy shows there).

The answers are short, so independent correct solutions resemble each other. The class's typical
level is the median of the pair scores and its spread 1.4826 * MAD (the standard deviation of a
normal distribution with that MAD), over pairs where both students wrote code; each pair's
robust z is (score - median) / spread. A pair is flagged when it has at least MIN_SHARED_TOKENS
of code in common and either
  - its score is at least NEAR_IDENTICAL (near-identical code, whatever the class's level: copies
    raise the median and the spread, so that three copies of one solution in a class of six stand
    out from no one), or
  - its score is at least FLAG_SCORE AND its robust z at least FLAG_Z: high in absolute terms and
    standing out from this class (a copy edited more).
The reference solution is compared with every student the same way (score and z against the
same class level, the same two rules): "close to the reference: may be a copy of leaked
solutions", reported apart, so that a copied pair stands out from answers that are merely correct.

Time: the test class (7 students) takes 0.3 s; a class of 100 (4,950 pairs) about 12 s, half of
it fingerprinting (pygments), half `compare_files`; plus ~3 s of imports.
"""

import csv
import html
import io
import json
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import highlight_overlap

from autograder.batch import UnreadableSubmission, find_submissions, opened, spreadsheet_text
from autograder.child.submission import NOTEBOOK
from autograder.submission import GRADED_FILES, PROVIDED_TREE, REFERENCE_TREE, SubmissionError, read_graded_file

DEFAULT_OUT = Path("grades/similarity")
# k: filtered characters per fingerprinted k-gram (copydetect's noise threshold; `V=V.V(V)` is one
# statement). Measured on the test class (tests/test_similarity.py), k = 15, 20, 25, 30 all separate
# the copied pair (0.95, 0.93, 0.91, 0.90) from the most similar independent pair (0.55, 0.51, 0.48,
# 0.42); smaller k raises the class median (0.46 at 15, 0.25 at 25), larger k lets short answers
# escape fingerprinting. We keep copydetect's default, 25.
NOISE_T = 25
GUARANTEE_T = 25  # window = GUARANTEE_T - NOISE_T + 1 = 1: every k-gram is kept (the answers are short)
# Flagged: score >= FLAG_SCORE and robust z >= FLAG_Z. Measured on the test class (3 independent
# correct solutions written differently, a copy of the reference, a renamed-and-reordered copy):
# independent pairs 0.21-0.49 (median 0.28, spread 0.09; the highest, 0.49 at z 2.3, is a student
# whose answers follow the reference against the copy of the reference), the copied pair 0.90
# (z 7.0); against the reference: independent students 0.23-0.49 (z <= 2.3), the copy 1.00 (z 8.1).
# FLAG_SCORE = 0.6 lies between the highest independent pair and the copy, with room for a copy
# edited more than this one; FLAG_Z = 4: 1.7 above the highest independent z here, and a class of
# 100 has ~5000 pairs, whose chance tail reaches z ~ 3.5-4 (normal quantile 1 - 1/5000).
FLAG_SCORE = 0.6
FLAG_Z = 4.0
# Flagged whatever the class's level: score >= NEAR_IDENTICAL. The z rule fails when copies are many:
# three exact copies of solution/ in a class of six (tests/test_similarity.py) raise the median pair
# to 0.37 and the spread to 0.17, so the copies (1.00) are at z 3.7, under FLAG_Z. Measured (k = 25):
# exact copies score 1.00; the test class's copy with every variable renamed, comments reworded and
# functions reordered 0.897; independent correct solutions at most 0.49. 0.85: above the most similar
# independent pair by 0.36, and below a disguised copy, which several copies in one class would
# otherwise keep under both rules.
NEAR_IDENTICAL = 0.85
# ... and every flag needs this much code in common (tokens after the skeleton, the mean of the two
# students' overlaps). Measured: one short function written the obvious way is the same code in two
# independent submissions (train_batch alone: 87 tokens, score 1.00 and z 20 in a class of four
# who each wrote one function; Decoder.forward alone: 81), while a whole answer is ~1,200 tokens
# (the reference: 1,189; its files 84 to 478).
MIN_SHARED_TOKENS = 150
# a floor on the spread, so that a small or uniform class (MAD 0) does not make every z infinite
MIN_SPREAD = 0.05
TOP_PAIRS = 20  # pairs listed and shown side by side (and every flagged pair beyond them)
CONTEXT_LINES = 3  # lines of unhighlighted code kept around each overlap in the side-by-side view
REFERENCE = "(reference solution)"  # no student's name: batch.safe_name keeps no parentheses or spaces
MAX_CODE_CHARS = 200_000  # of one file: the answers are a few hundred lines; beyond, fingerprinting takes minutes


@dataclass
class Author:
    """One student (or the reference): the text and fingerprints of each graded file read."""

    name: str
    texts: dict = field(default_factory=dict)  # filename -> extracted code
    prints: dict = field(default_factory=dict)  # filename -> CodeFingerprint
    notes: list = field(default_factory=list)  # files that could not be read, and why

    def coverage(self, filename):
        fingerprint = self.prints.get(filename)
        return float(fingerprint.token_coverage) if fingerprint is not None else 0.0

    @property
    def own_code(self):
        """Tokens fingerprinted after the skeleton is removed: 0 for the skeleton alone."""
        return sum(self.coverage(f) for f in GRADED_FILES)


@dataclass
class Pair:
    a: str
    b: str
    score: float
    per_file: dict  # filename -> (score, overlap_a, overlap_b, coverage_a, coverage_b)
    z: float = 0.0
    why: str = ""  # why it is flagged: NEAR_IDENTICAL_WHY or STANDS_OUT_WHY; "" when it is not

    @property
    def flagged(self):
        return bool(self.why)

    @property
    def shared_tokens(self):
        """The code the two have in common: the mean of their overlaps, in fingerprinted tokens."""
        return sum(values[1] + values[2] for values in self.per_file.values()) / 2

    @property
    def most_similar_file(self):
        shared = [(values[0], f) for f, values in self.per_file.items() if values[1] + values[2] > 0]
        return max(shared)[::-1] if shared else ("", 0.0)


# ---------------------------------------------------------------------------------------------
# extraction


def _cells(data):
    """[(cell name, source)] of a notebook's code cells, all of them: the skeleton's cells are removed
    as boilerplate, and the nbgrader marks are the student's to edit, so they decide nothing here.
    ValueError when the notebook is not readable JSON."""
    try:
        cells = json.loads(data.decode("utf-8", errors="replace"))["cells"]
        assert isinstance(cells, list)
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        raise ValueError(f"{NOTEBOOK} is not a readable notebook ({type(error).__name__})") from None
    found = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        marks = metadata.get("nbgrader") if isinstance(metadata.get("nbgrader"), dict) else {}
        source = cell.get("source", "")
        source = "".join(map(str, source)) if isinstance(source, list) else str(source)
        name = str(marks.get("grade_id") or cell.get("id") or f"#{number}")
        found.append((name, source))
    return found


def notebook_code(data):
    """The code cells of a notebook joined, each after a comment naming its cell."""
    return "".join(f"# --- {NOTEBOOK} cell {name} ---\n{source.rstrip()}\n\n" for name, source in _cells(data))


def extract(tree, notes):
    """{filename: code the author wrote} for the graded files of `tree`; a file that cannot be read
    is left out with a line in `notes`. Other files are ignored."""
    texts = {}
    for filename in GRADED_FILES:
        try:
            data = read_graded_file(tree, filename)
            if data is None:
                continue
            text = notebook_code(data) if filename == NOTEBOOK else data.decode("utf-8", errors="replace")
            if len(text) > MAX_CODE_CHARS:
                notes.append(f"{filename}: only its first {MAX_CODE_CHARS:,} characters compared ({len(text):,})")
                text = text[:MAX_CODE_CHARS]
            texts[filename] = text
        except (SubmissionError, OSError, ValueError) as error:
            notes.append(f"{filename} not compared: {error}")
    return texts


def skeleton_texts(provided_tree=PROVIDED_TREE):
    """The provided code: every .py file of the skeleton and every code cell of its notebook."""
    texts = [path.read_text(errors="replace") for path in sorted(Path(provided_tree).glob("*.py"))]
    notebook = Path(provided_tree) / NOTEBOOK
    if notebook.is_file():
        texts.append(notebook_code(notebook.read_bytes()))
    return texts


def boilerplate_hashes(texts):
    """The k-gram hashes of the provided code, as copydetect's CopyDetector computes them."""
    hashes = []
    for number, text in enumerate(texts):
        hashes.extend(CodeFingerprint(f"skeleton-{number}.py", NOISE_T, 1, language="python",
                                      fp=io.StringIO(text)).hashes)
    return np.unique(np.array(hashes))


def fingerprint(author, boilerplate):
    for filename, text in author.texts.items():
        author.prints[filename] = CodeFingerprint(f"{author.name}/{filename}", NOISE_T, GUARANTEE_T - NOISE_T + 1,
                                                  boilerplate, language="python", fp=io.StringIO(text))
    return author


def read_class(submissions, log=print):
    """([Author] of every submission, ["student: could not be compared: why"])."""
    authors, problems = [], []
    for student, path in find_submissions(submissions).items():
        author = Author(student)
        try:
            with opened(path) as tree:
                author.texts = extract(tree, author.notes)
        except (UnreadableSubmission, OSError, ValueError) as error:
            problems.append(f"{student}: could not be compared: {path.name}: {error}")
            continue
        except Exception as error:  # anything else specific to this submission: a line, and the report goes on
            problems.append(f"{student}: could not be compared: {path.name}: {type(error).__name__}: {error}")
            continue
        problems.extend(f"{student}: {note}" for note in author.notes)
        authors.append(author)
    log(f"read {len(authors)} submissions" + (f" ({len(problems)} problems)" if problems else ""))
    return authors, problems


# ---------------------------------------------------------------------------------------------
# comparison


def compare(a, b):
    """The Pair of two fingerprinted authors (see the module's docstring for the score)."""
    per_file, shared, total = {}, 0.0, 0.0
    for filename in GRADED_FILES:
        cov_a, cov_b = a.coverage(filename), b.coverage(filename)
        if cov_a + cov_b == 0:
            continue
        ov_a = ov_b = 0.0
        if cov_a and cov_b:
            _, (sim_a, sim_b), _ = compare_files(a.prints[filename], b.prints[filename])
            ov_a, ov_b = sim_a * cov_a, sim_b * cov_b
        per_file[filename] = ((ov_a + ov_b) / (cov_a + cov_b), ov_a, ov_b, cov_a, cov_b)
        shared += ov_a + ov_b
        total += cov_a + cov_b
    return Pair(a.name, b.name, shared / total if total else 0.0, per_file)


def typical_level(scores):
    """(median, spread): the median and 1.4826 * MAD (at least MIN_SPREAD) of `scores`."""
    if not scores:
        return 0.0, MIN_SPREAD
    median = statistics.median(scores)
    mad = statistics.median(abs(s - median) for s in scores)
    return median, max(1.4826 * mad, MIN_SPREAD)


NEAR_IDENTICAL_WHY, STANDS_OUT_WHY = "near-identical", "stands out from the class"


def _rate(pair, median, spread):
    """The pair's robust z against the class's level, and why it is flagged ("" when it is not)."""
    pair.z = (pair.score - median) / spread
    if pair.shared_tokens < MIN_SHARED_TOKENS:
        pair.why = ""
    elif pair.score >= NEAR_IDENTICAL:
        pair.why = NEAR_IDENTICAL_WHY
    elif pair.score >= FLAG_SCORE and pair.z >= FLAG_Z:
        pair.why = STANDS_OUT_WHY
    else:
        pair.why = ""
    return pair


@dataclass
class Report:
    submissions: str
    students: list
    pairs: list  # Pair, most similar first
    reference: list  # Pair(student, "reference"), most similar first
    median: float
    spread: float
    problems: list
    authors: dict
    seconds: float = 0.0

    @property
    def flagged(self):
        return [p for p in self.pairs if p.flagged]

    @property
    def close_to_reference(self):
        return [p for p in self.reference if p.flagged]


def analyse(submissions, reference_tree=REFERENCE_TREE, provided_tree=PROVIDED_TREE, log=print):
    """The Report of a class (nothing written)."""
    start = time.perf_counter()
    authors, problems = read_class(submissions, log)
    boilerplate = boilerplate_hashes(skeleton_texts(provided_tree))
    for author in authors:
        fingerprint(author, boilerplate)
    notes = []
    reference = fingerprint(Author(REFERENCE, extract(reference_tree, notes)), boilerplate)
    pairs = [compare(a, b) for i, a in enumerate(authors) for b in authors[i + 1:]]
    writers = {a.name for a in authors if a.own_code > 0}
    median, spread = typical_level([p.score for p in pairs if p.a in writers and p.b in writers])
    for pair in pairs:
        _rate(pair, median, spread)
    to_reference = [_rate(compare(a, reference), median, spread) for a in authors]
    order = lambda p: (-p.score, p.a, p.b)  # noqa: E731
    return Report(str(submissions), [a.name for a in authors], sorted(pairs, key=order),
                  sorted(to_reference, key=order), median, spread, problems,
                  {a.name: a for a in [*authors, reference]}, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# outputs


def write_csvs(report, out):
    with open(out / "similarity.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_a", "student_b", "score", "robust_z", "flagged", "most_similar_file",
                         "most_similar_file_score", "shared_tokens", "why_flagged"])
        for p in report.pairs:
            name, score = p.most_similar_file
            writer.writerow([spreadsheet_text(p.a), spreadsheet_text(p.b), f"{p.score:.4f}", f"{p.z:.2f}",
                             "yes" if p.flagged else "", spreadsheet_text(name or ""), f"{score:.4f}" if name else "",
                             f"{p.shared_tokens:.0f}", spreadsheet_text(p.why)])
    with open(out / "reference.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "similarity_to_reference", "robust_z", "close_to_reference", "closest_file",
                         "closest_file_score", "shared_tokens", "why_flagged"])
        for p in report.reference:
            name, score = p.most_similar_file
            writer.writerow([spreadsheet_text(p.a), f"{p.score:.4f}", f"{p.z:.2f}", "yes" if p.flagged else "",
                             spreadsheet_text(name or ""), f"{score:.4f}" if name else "", f"{p.shared_tokens:.0f}",
                             spreadsheet_text(p.why)])


def _highlighted(fingerprint_, slices, css):
    """The author's code, HTML-escaped, the overlap (copydetect's slices) wrapped in a span."""
    if slices is None or len(slices) == 0 or np.asarray(slices).size == 0:
        return html.escape(fingerprint_.raw_code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _ = highlight_overlap(fingerprint_.raw_code, np.asarray(slices), f"<mark class='{css}'>", "</mark>",
                                    truncate=CONTEXT_LINES, escape_html=True)
    return code


def _side_by_side(report, pair, anchor, is_open):
    a, b = report.authors[pair.a], report.authors[pair.b]
    e = html.escape
    title = "the reference solution" if pair.b == REFERENCE else e(pair.b)
    verdict = (f"{'CLOSE TO THE REFERENCE' if pair.b == REFERENCE else 'FLAGGED'} ({pair.why})" if pair.flagged
               else "")
    parts = [f"<details id='{anchor}'{' open' if is_open else ''}><summary><b>{e(pair.a)}</b> and "
             f"<b>{title}</b>: score {pair.score:.2f}, z {pair.z:+.1f}{' &mdash; ' + verdict if verdict else ''}"
             f"</summary>"]
    for filename, (score, ov_a, ov_b, cov_a, cov_b) in sorted(pair.per_file.items(), key=lambda kv: -kv[1][0]):
        if ov_a + ov_b == 0:
            parts.append(f"<p class='file'>{e(filename)}: no overlap (own code: {cov_a:.0f} and {cov_b:.0f} "
                         f"tokens)</p>")
            continue
        _, _, (slices_a, slices_b) = compare_files(a.prints[filename], b.prints[filename])
        parts.append(f"<p class='file'>{e(filename)}: {score:.2f} of their own code in common "
                     f"({ov_a:.0f}/{cov_a:.0f} and {ov_b:.0f}/{cov_b:.0f} tokens)</p><div class='sbs'>"
                     f"<div><div class='who'>{e(pair.a)}</div><pre>{_highlighted(a.prints[filename], slices_a, 'a')}"
                     f"</pre></div><div><div class='who'>{title}</div>"
                     f"<pre>{_highlighted(b.prints[filename], slices_b, 'b')}</pre></div></div>")
    parts.append("</details>")
    return "\n".join(parts)


# the side-by-side panes share the page's width, half each whatever their code (minmax(0, 1fr): a long line
# never widens its column), and wrap long lines; a long file scrolls inside its pane
CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.8em}
.summary{font-size:1.05em;background:#f4f6f8;padding:.7em 1em;border-left:4px solid #456}
.problems{background:#fff6dd;padding:.5em 1em;border-left:4px solid #c90}
table{border-collapse:collapse;font-size:.92em}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
th{background:#eef}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.flag td{background:#fde2e2;font-weight:600}
.bar{display:inline-block;height:.7em;background:#5a7;vertical-align:middle;margin-right:.4em}
tr.flag .bar{background:#c33}
details{margin:.6em 0;border:1px solid #ccc;padding:.4em .7em}summary{cursor:pointer}
.sbs{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:.6em}.who{font-weight:600;font-size:.9em}
pre{background:#fafafa;border:1px solid #e4e4e4;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere;
font-size:.8em;margin:.2em 0;max-height:80vh;overflow:auto}
mark.a{background:#ffc9c9}mark.b{background:#c9f0d0}.file{margin:.8em 0 .2em;font-weight:600}
.muted{color:#666;font-size:.9em}
"""


def _bar(score):
    return f"<span class='bar' style='width:{max(score, 0) * 80:.0f}px'></span>"


def render_html(report):
    e = html.escape
    shown = [p for p in report.pairs[:TOP_PAIRS] if p.score > 0] + [p for p in report.pairs[TOP_PAIRS:] if p.flagged]
    n_writers = sum(1 for s in report.students if report.authors[s].own_code > 0)
    idle = [s for s in report.students if report.authors[s].own_code == 0]
    flagged, close = report.flagged, report.close_to_reference
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Similarity: {e(report.submissions)}"
           f"</title><style>{CSS}</style></head><body>",
           f"<h1>Similarity between students: {e(report.submissions)}</h1>",
           f"<p class='summary'><b>{len(flagged)} pair{'s' * (len(flagged) != 1)} flagged</b> of {len(report.pairs)} "
           f"({len(report.students)} students compared)"
           f"{': ' + e(', '.join(f'{p.a} & {p.b} ({p.score:.2f})' for p in flagged[:10])) if flagged else ''}"
           f"{', ...' if len(flagged) > 10 else ''}. <b>{len(close)} student{'s' * (len(close) != 1)} close to "
           f"the reference</b>{': ' + e(', '.join(p.a for p in close)) if close else ''}.<br>"
           f"Typical similarity of two students in this class: median "
           f"<b>{report.median:.2f}</b>, spread {report.spread:.2f} (1.4826 &times; MAD, over the {n_writers} "
           f"students who wrote code). Flagged, when the two have at least {MIN_SHARED_TOKENS} tokens of code in "
           f"common: <b>{NEAR_IDENTICAL_WHY}</b>, a score &ge; {NEAR_IDENTICAL:.2f} whatever the class's level (copies "
           f"raise the median), or <b>{STANDS_OUT_WHY}</b>, a score &ge; {FLAG_SCORE:.2f} and at least {FLAG_Z:g} "
           f"spreads above the median (z &ge; {FLAG_Z:g}).</p>"]
    if report.problems:
        out.append("<div class='problems'><b>Not (fully) compared</b><ul>" +
                   "".join(f"<li>{e(p)}</li>" for p in report.problems) + "</ul></div>")
    if idle:
        out.append(f"<p class='muted'>No code of their own (the skeleton only, or nothing): {e(', '.join(idle))}; "
                   f"they score 0 and are left out of the typical level.</p>")
    out.append(f"<h2>Most similar pairs ({len(shown)} of {len(report.pairs)}; pairs with nothing in common are "
               f"only in similarity.csv)</h2>"
               "<table><tr><th>#</th><th>student</th><th>student</th><th>score</th><th>above typical (z)</th>"
               "<th>flagged</th><th>most similar file</th></tr>")
    for rank, p in enumerate(shown, 1):
        name, score = p.most_similar_file
        out.append(f"<tr{' class=flag' if p.flagged else ''}><td class=n>{report.pairs.index(p) + 1}</td>"
                   f"<td><a href='#pair-{rank}'>{e(p.a)}</a></td><td>{e(p.b)}</td><td class=n>{_bar(p.score)}"
                   f"{p.score:.2f}</td><td class=n>{p.z:+.1f}</td><td>{f'FLAGGED ({p.why})' if p.flagged else ''}</td>"
                   f"<td>{e(name)}{f' ({score:.2f})' if name else ''}</td></tr>")
    out.append("</table>")
    out.append("<h2>Similarity to the reference solution</h2><p class='muted'>Close to the reference: may be a copy "
               "of leaked solutions. Scored like a pair (the reference as one more student), z against the same "
               "typical level, flagged by the same rules; correct answers resemble the reference somewhat, a copy "
               "resembles it entirely.</p>"
               "<table><tr><th>student</th><th>similarity to the reference</th><th>above typical (z)</th>"
               "<th>close to the reference</th><th>closest file</th></tr>")
    for p in report.reference:
        name, score = p.most_similar_file
        out.append(f"<tr{' class=flag' if p.flagged else ''}><td>{e(p.a)}</td><td class=n>{_bar(p.score)}"
                   f"{p.score:.2f}</td><td class=n>{p.z:+.1f}</td>"
                   f"<td>{f'close to the reference ({p.why})' if p.flagged else ''}"
                   f"</td><td>{e(name)}{f' ({score:.2f})' if name else ''}</td></tr>")
    out.append("</table><h2>Overlapping code, side by side</h2><p class='muted'>Highlighted: code both wrote (after "
               f"renaming, without comments and the provided skeleton); overlaps closer than k = {NOISE_T} "
               f"filtered characters are joined, so provided lines between them (def lines, docstrings) are "
               f"highlighted too; unhighlighted lines far from an overlap are cut (...).</p>")
    for rank, p in enumerate(shown, 1):
        if p.score > 0:
            out.append(_side_by_side(report, p, f"pair-{rank}", p.flagged))
    for rank, p in enumerate(close, 1):
        out.append(_side_by_side(report, p, f"reference-{rank}", True))
    out.append(f"<p class='muted'>copydetect winnowing, k = {NOISE_T} filtered characters; boilerplate: the "
               f"skeleton (assignment/). Generated in {report.seconds:.1f} s.</p></body></html>")
    return "\n".join(out)


def write_report(report, out):
    out = Path(out)
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)  # the report holds every student's code
    write_csvs(report, out)
    (out / "similarity.html").write_text(render_html(report), encoding="utf-8")
    return out / "similarity.html"


def similarity(submissions, out=DEFAULT_OUT, log=print):
    """Analyse a class and write the report under `out`; return the Report."""
    if not Path(submissions).is_dir():
        raise FileNotFoundError(f"{submissions} is not a folder of submissions (one folder or .zip per student)")
    report = analyse(submissions, log=log)
    path = write_report(report, out)
    log(f"{len(report.students)} students, {len(report.pairs)} pairs in {report.seconds:.1f} s; typical similarity "
        f"{report.median:.2f} (spread {report.spread:.2f})")
    for problem in report.problems:
        log(f"  {problem}")
    for p in report.flagged:
        log(f"  flagged: {p.a} and {p.b}: {p.score:.2f} (z {p.z:+.1f}; {p.why}), most similar "
            f"{p.most_similar_file[0]}")
    for p in report.close_to_reference:
        log(f"  close to the reference: {p.a}: {p.score:.2f} (z {p.z:+.1f}; {p.why})")
    log(f"Wrote {path}, {Path(out) / 'similarity.csv'} and {Path(out) / 'reference.csv'}")
    return report
