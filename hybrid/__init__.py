"""qldm's seed models: hybrid quantum-classical generative models, their data and metrics.

Subpackages:
    data: image data sets (``hybrid.data.load_dataset``) as float tensors in ``[0, 1]``.
    metrics: SSIM, the digit classifier's Fréchet distance and KID, and Inception FID when
        weights are given (``hybrid.metrics.metrics_report``).

``hybrid`` talks to quantum backends only through ``client.QuantumLayer``. This module imports
nothing heavy, so ``import hybrid.data`` stays cheap.
"""

from __future__ import annotations
