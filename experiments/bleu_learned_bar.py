"""Measure the learned bar of 3.1a-bleu and 3.1b-bleu (autograder/checks/q3.py, LEARNED_MARGIN): the
validation BLEU-4 of the untrained decoder, of the reference, and of the decoder-step mistakes of
tests/wrong_submissions.py (DECODER_STEP_MISTAKES), each trained by its own code in this process and
decoded here by the statement's step, exactly as the BLEU tests score them; and which cheaper tests
each mistake loses.

    .venv/bin/python -m experiments.bleu_learned_bar [--budget test|grading] [--seeds 42,43,44] [--only 3.1a] 2>/dev/null

One thread (as the grading child). Prints a markdown table per budget; the last line says, per
decoder, the smallest gap between the steps that train and the untrained BLEU-4, and the largest gap
of those that do no work (which the test stops before training, whatever their BLEU-4).
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from autograder import rubric as rubric_module
from autograder.checks import CheckFailure, all_checks, outcome, seed_everything
from autograder.checks import q3
from autograder.submission import LocalSubmission, load_module
from tests.conftest import make_tree
from tests.wrong_submissions import DECODER_STEP_MISTAKES

QUESTION_OF = {"decoder.py": "3.1a", "decoder_with_attention.py": "3.1b"}


def budgets(name):
    """{test id: budget without its margin} of the two BLEU tests for `name` (grading or test)."""
    tests = {t.id: t for t in rubric_module.load().tests}
    table = {tid: (tests[tid].training_reduced if name == "test" else tests[tid].training)
             for tid in ("3.1a-bleu", "3.1b-bleu")}
    return {tid: {k: v for k, v in b.items() if k != "margin"} for tid, b in table.items()}


def lost_tests(tree, question):
    """The cheaper tests of `question` the tree loses (the BLEU test left out)."""
    checks = all_checks()
    lost = []
    for test in rubric_module.load().tests:
        if test.question == question and not test.id.endswith("-bleu"):
            sub = LocalSubmission(tree)
            try:
                seed_everything()
                if outcome(checks[test.id], sub)[0] != "passed":
                    lost.append(test.id)
            finally:
                sub.cleanup()
    return lost


def does_no_work(tree, use_attention):
    """Whether the BLEU test stops this step before training (q3._step_does_work)."""
    sub = LocalSubmission(tree)
    try:
        q3._step_does_work(sub, use_attention, ())
        return False
    except CheckFailure:
        return True
    finally:
        sub.cleanup()


def bleu_of(tree, use_attention, budget):
    """BLEU-4 of the trained weights decoded by the statement's step, (by the tree's own step, which the
    grader never runs to decode), [by the grader's copy of the step when it is a known mistake:
    q3.known_mistake] as text."""
    sub = LocalSubmission(tree)
    try:
        seed_everything()
        model = q3.trained_decoder(sub, use_attention, budget)
        own = q3._statement_decoder(type("Own", (), {"reference": staticmethod(
            lambda name: load_module(tree, name))}), use_attention, q3._grading_sizes())
        own.load_state_dict(model.state_dict())
        known = q3.known_mistake(sub, use_attention, ())
        copy = f" [{q3.validation_bleu(sub, q3.KnownStepDecoder(model, known[1])):.4f}]" if known else ""
        return f"{q3.validation_bleu(sub, model):.4f} ({q3.validation_bleu(sub, own):.4f}){copy}"
    except CheckFailure as error:
        return f"fails ({str(error).splitlines()[0][:60]})"
    finally:
        sub.cleanup()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=("test", "grading"), default="test")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--only", default="3.1a,3.1b")
    opt = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in opt.seeds.split(",")]
    space = Path(tempfile.mkdtemp(prefix="hw2-bleu-bar-"))
    try:
        for question in opt.only.split(","):
            use_attention = question == "3.1b"
            budget = budgets(opt.budget)[f"{question}-bleu"]
            print(f"\n### {question}-bleu, budget {opt.budget} {budget} (seeds {opt.seeds})\n")
            print("| decoder | cheaper tests lost | " + " | ".join(f"BLEU-4 seed {s} (own step) [grader's copy]" for s in seeds) + " |")
            print("|---|---|" + "---|" * len(seeds))
            reference = make_tree(space, name=f"reference-{question}")
            sub = LocalSubmission(reference)
            try:
                untrained = [q3.untrained_bleu(sub, use_attention, s) for s in seeds]
            finally:
                sub.cleanup()
            print("| untrained (statement's layers at the training's initialisation) | | "
                  + " | ".join(f"{u:.4f}" for u in untrained) + " |")
            rows = [("reference", reference)]
            for index, (name, file, changes, loses, keeps) in enumerate(DECODER_STEP_MISTAKES):
                if QUESTION_OF[file] == question:
                    rows.append((name, make_tree(space, changes, file, name=f"mistake-{index:02d}")))
            gaps = {"train": [], "no work": []}
            for name, tree in rows:
                lost = lost_tests(tree, question) if name != "reference" else []
                idle = does_no_work(tree, use_attention)
                results = [bleu_of(tree, use_attention, dict(budget, seed=s)) for s in seeds]
                print(f"| {name}{' (does no work: stopped before training)' if idle else ''} | "
                      f"{', '.join(lost) or '-'} | " + " | ".join(results) + " |", flush=True)
                for result, base in zip(results, untrained):
                    value = float(result.split()[0]) if not result.startswith("fails") else 0.0
                    gaps["no work" if idle else "train"].append(value - base)
            print(f"\n{question}: the steps that train are {min(gaps['train']):+.4f} or more above the untrained "
                  f"BLEU-4; those that do no work at most {max(gaps['no work'] or [float('nan')]):+.4f}")
    finally:
        shutil.rmtree(space, ignore_errors=True)


if __name__ == "__main__":
    main()
