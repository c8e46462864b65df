"""dream-cl: DREAM dataset distillation and continual-learning replay.

Layers, in the one direction data flows: ``dream_cl.data`` -> ``dream_cl.models`` ->
``dream_cl.augment`` / ``dream_cl.evaluate`` / ``dream_cl.coreset`` -> ``dream_cl.distill``
-> ``dream_cl.strategies`` / ``dream_cl.scenarios`` -> ``dream_cl.cli``.
"""

__version__ = "0.1.0"
