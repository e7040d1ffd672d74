"""`lmforge evaluate` profiles in a child process: a child that dies is an error at once.

The child used to be awaited with ``q.get(timeout=1800)``: killed (the out-of-memory killer's
SIGKILL), it left evaluate hanging for 30 minutes.
"""

import signal
import threading
import time

import pytest

from lmforge.core.errors import LmforgeError
from lmforge.evaluate.profile import profile_in_fresh_process
from lmforge.tasks.classification import LabelInfo


class DiesInTheChild:
    """Unpickled in the child, this kills it with SIGKILL, as the OOM killer would."""

    def __reduce__(self):
        return signal.raise_signal, (signal.SIGKILL,)


def run_with_deadline(seconds: float, **kwargs):
    """profile_in_fresh_process in a thread, so that a hang fails the test instead of CI."""
    outcome = {}

    def target():
        try:
            outcome["result"] = profile_in_fresh_process(**kwargs)
        except Exception as e:  # noqa: BLE001 - handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"profile_in_fresh_process still waiting after {seconds} s"
    return outcome, time.perf_counter() - t0


def test_a_killed_profiling_child_is_a_prompt_clear_error(tmp_path):
    outcome, seconds = run_with_deadline(
        90,
        task_name="classification",
        path=tmp_path,
        info=DiesInTheChild(),
        batches={1: {}},
        repeats=1,
    )
    error = outcome.get("error")
    assert isinstance(error, LmforgeError), outcome
    assert "died before reporting" in str(error) and "SIGKILL" in str(error)
    assert "--no-profile" in str(error)  # what the user can do
    assert seconds < 60


def test_an_error_in_the_child_is_reported(tmp_path):
    outcome, _ = run_with_deadline(
        120,
        task_name="classification",
        path=tmp_path / "no-such-model",
        info=LabelInfo(["a", "b"]),
        batches={1: {}},
        repeats=1,
    )
    with pytest.raises(LmforgeError, match="profiling .*no-such-model failed"):
        raise outcome["error"]
