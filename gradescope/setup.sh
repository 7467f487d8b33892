#!/usr/bin/env bash
# Gradescope runs this once, as root, when the autograder image is built (the zip is unpacked in
# /autograder/source). It installs Python's packages, Fashion-MNIST and the encoder's features of
# the Sydney-Captions copy bundled in the zip, so that grading a submission downloads nothing.
# Choose Gradescope's Ubuntu 24.04 base image (Python 3.11 or newer is needed).
set -euo pipefail
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip make bubblewrap libseccomp2

PYTHON=$(command -v python3.11 || command -v python3)
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup.sh: Python 3.11 or newer is needed; choose the Ubuntu 24.04 base image" >&2; exit 1; }

make setup PYTHON="$PYTHON" PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu' INSTRUCTOR=0
# the grading child's seccomp filter (autograder/child/confine.py): without it the grader refuses to grade
.venv/bin/python -m pip install --quiet "$(grep '^pyseccomp==' requirements-instructors.txt)"
make data
make features SYDNEY_DIR="$PWD/sydney-captions"

# Student code runs as an unprivileged uid (autograder/sandbox.py; Gradescope's containers allow no
# namespaces, so the 'user' layer): nothing private may be readable by it. Root, which grades, still reads them.
chmod -R go-rwx solution autograder/checks autograder/calibration.json data/cache sydney-captions
if [ -d /usr/share/datasets ]; then chmod -R o-rwx /usr/share/datasets; fi
