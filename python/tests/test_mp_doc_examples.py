"""The examples of the Python documentation's multiprocessing page run
unchanged but for their import, on a `volley up` platform, and print what
they print with the standard library (lines sorted where the documentation
says their order is arbitrary; process ids and names, which differ from run
to run anyway, masked)."""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(__file__), "doc_examples")

# name: how its output is compared ("exact", or "sorted": any order of lines).
EXAMPLES = {
    "pool_square": "exact",
    "process_hello": "exact",
    "process_info": "exact",
    "contexts": "exact",
    "queue_example": "exact",
    "pipe_example": "exact",
    "lock_example": "sorted",
    "shared_memory": "exact",
    "manager_example": "exact",
    "pool_tour": "sorted",
    "task_queues": "sorted",
}


def _on_volley(source):
    """The example with its one change: ``multiprocessing`` is Volley's."""
    source = re.sub(r"^from multiprocessing import", "from volley.multiprocessing import", source, flags=re.M)
    return re.sub(r"^import multiprocessing as", "import volley.multiprocessing as", source, flags=re.M)


def _masked(text, order):
    # Process ids (and any other number of 3 digits or more, alike on both sides).
    text = re.sub(r"\b\d{3,}\b", "<pid>", text)
    text = re.sub(r"Process-\d+", "Process-N", text)
    lines = text.splitlines()
    return sorted(lines) if order == "sorted" else lines


def _run(source, env, tmp_path, name):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_documentation_example_prints_what_it_prints_with_the_standard_library(name, unsandboxed_up, tmp_path):
    up = unsandboxed_up
    source = open(os.path.join(HERE, f"{name}.py")).read()
    theirs = _run(source, dict(os.environ), tmp_path, f"std_{name}")
    env = dict(os.environ, VOLLEY_CONTROLLER=up.controller)
    ours = _run(_on_volley(source), env, tmp_path, f"volley_{name}")
    order = EXAMPLES[name]
    assert _masked(ours, order) == _masked(theirs, order)
