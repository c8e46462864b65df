"""Fault injection for tests, never part of the installed tool.

A test that wants a rank to die puts this folder on ``PYTHONPATH`` and sets
``DREAM_CL_TEST_KILL=RANK:ITERATION``; every Python process it starts (the launcher and
each rank) then imports this module first, and that rank kills itself (SIGKILL, as the
kernel's OOM killer or a lost node would) right after the checkpoint of that iteration.
"""

import os

_SPEC = os.environ.get("DREAM_CL_TEST_KILL")

if _SPEC:
    import signal

    from dream_cl.distill import engine

    _rank, _, _at = _SPEC.partition(":")
    _save = engine.DistillRun.save_checkpoint

    def _save_then_die(self: engine.DistillRun) -> None:
        _save(self)
        if self.env.rank == int(_rank) and self.state.iteration == int(_at):
            os.kill(os.getpid(), signal.SIGKILL)

    engine.DistillRun.save_checkpoint = _save_then_die
