"""The paper's rules, each written once: presets, evaluation recipes, augmentations.

Every rule here says which official code it follows: DREAM (``lyq312318224/DREAM``, IDC's
``condense.py`` with representative matching), IDC (``snu-mllab/Efficient-Dataset-
Condensation``: reproduce settings, evaluation ``train.py``, ``continual-learning/``) or DC /
DSA / DM (``VICO-UoE/DatasetCondensation``: ``main.py``, ``main_DM.py``, ``utils.py``).
docs/fidelity.md ("Where each rule lives") lists them.

- :mod:`dream_cl.protocol.frameworks`: one frozen record per framework, everything that
  differs between them but the step function (:mod:`dream_cl.distill.registry` adds it).
- :mod:`dream_cl.protocol.datasets`: how dataset names compare; which datasets are not
  mirror-symmetric; the DSA papers' full augmentation strategy.
- :mod:`dream_cl.protocol.distillation`: the ``paper`` and ``cpu`` distillation presets and
  the long-run hint.
- :mod:`dream_cl.protocol.evaluation`: the evaluation recipes, CutMix and DSA rules, and
  which recipe a framework's sets take.
- :mod:`dream_cl.protocol.normalization`: the statistics each framework normalises with,
  and the image-gradient scale of frameworks that step on normalised images.
- :mod:`dream_cl.protocol.continual`: the continual-learning presets and augmentation.
- :mod:`dream_cl.protocol.models`: the model options the official code derives from the
  dataset.

This package sits low (beside the models): it imports only the helpers, the augmentation
names and the data layer, so every layer above can read the rules.
"""
