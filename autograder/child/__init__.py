"""The trust boundary: everything that runs in the student's process, and nothing else.

The grading child (`runner`) runs inside the sandbox with only this package, the Python
packages and the student's working folder visible. It answers the grader's requests by running
`probes` on the student's code and sending back plain values (`wire`), confined first
(`confine`: no channel out of its process); `compare` holds the got/expected comparisons the
probes and the checks share; `submission` loads the student's files as modules; `seeds` seeds
Python, numpy and torch.

This package imports nothing of the repository outside itself (a test checks it), so that
binding it alone into the sandbox is enough, and the students' repository ships it as it is.
"""
