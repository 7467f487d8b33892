"""Instructor tooling for Homework 2, one module per step of the pipeline:

    generate  solution/ -> assignment/ (stubs where the reference has solution blocks)

Command line: `python -m autograder --help`.
"""
