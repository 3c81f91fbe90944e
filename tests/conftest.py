"""Test-session settings.

One persistent XLA compilation cache per test run, shared by the two xdist workers and by the
scripts the tests start as subprocesses: a program compiled once (the perceptron solvers, the
classifiers of the pruning jobs) is not compiled again in another process. The cache starts
empty in every run (its directory is named by the controlling process) and is removed at the
end, so no state leaks between runs. Only compilations over half a second are stored.
"""

import os
import shutil
import tempfile

_OWNER = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
CACHE_DIR = os.path.join(tempfile.gettempdir(), f"jaxprune-tests-xla-cache-{_OWNER}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def pytest_sessionfinish(session, exitstatus):
  if not hasattr(session.config, "workerinput"):  # the controller, or a run without xdist
    shutil.rmtree(CACHE_DIR, ignore_errors=True)
