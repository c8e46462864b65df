"""Each command's work as one library function: a typed request in, a typed result out.

The command line (:mod:`dream_cl.commands`) only turns options into these requests, so a
Python user, a benchmark and a test get exactly what ``dream-cl`` does::

    from dream_cl.jobs import DistillRequest, distill_dataset

    result = distill_dataset(DistillRequest("digits", ipc=2, preset="cpu", out=Path("runs/d")))
"""

from __future__ import annotations

from dream_cl.jobs.continual import ContinualRequest, compare_continual, run_continual
from dream_cl.jobs.coreset import CoresetRequest, CoresetResult, select_coreset_into
from dream_cl.jobs.distill import DistillRequest, distill_dataset
from dream_cl.jobs.evaluate import ArtifactEvaluation, EvaluateRequest, evaluate_artifact
from dream_cl.jobs.process import launch

__all__ = [
    "ArtifactEvaluation",
    "ContinualRequest",
    "CoresetRequest",
    "CoresetResult",
    "DistillRequest",
    "EvaluateRequest",
    "compare_continual",
    "distill_dataset",
    "evaluate_artifact",
    "launch",
    "run_continual",
    "select_coreset_into",
]
