"""``aer:<device>``: Aer with a fake device's noise model, running the same ISA circuits.

``AerSimulator.from_backend(fake)`` copies the device's ``Target`` (coupling map, gate set,
durations, errors, T1/T2) and builds its noise model from them. Everything else is the
runtime path of :class:`qldm.backends.runtime.RuntimeBackend`: the same cached ISA circuit
(:func:`qldm.circuits.transpile.transpile_spec`, chosen qubits, parameterized noise slots),
calibrated noise subtraction, M3 readout mitigation and one primitive ``run`` per workload.
The difference is where it runs: Qiskit's ``BackendSamplerV2``/``BackendEstimatorV2`` on the
simulator directly, with no runtime ``Batch``/``Session`` and no runtime job (the primitive
job's id is checkpointed and results are cached under it like the runtime's; the metadata's
``execution_mode`` is ``direct``, also for jobs of a run).
"""

from __future__ import annotations

import warnings
from typing import Any

from qldm.backends._runtime_submit import SubmitOptions
from qldm.backends.runtime import RuntimeBackend, fake_device


class AerDeviceBackend(RuntimeBackend):
    """Aer with the noise model of fake device ``device`` (``manila`` or ``fake_manila``).

    Args:
        device: the fake device whose noise model and target to use.
        **options: as :class:`qldm.backends.runtime.RuntimeBackend` (``resilience`` is an
            ``ibm:``-only option and is refused).
    """

    KINDS = ("aer",)
    SESSIONS = False

    def __init__(self, device: str, **options: Any) -> None:
        super().__init__(f"aer:{device}", **options)

    def _resolve(
        self, device: str, token: str | None, channel: str | None, instance: str | None
    ) -> Any:
        from qiskit_aer import AerSimulator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AerSimulator.from_backend(fake_device(device))

    def _primitive(self, runtime_mode: Any, use_m3: bool, options: SubmitOptions) -> Any:
        """Qiskit's ``BackendSamplerV2``/``BackendEstimatorV2`` on the simulator itself."""
        from qiskit.primitives import BackendEstimatorV2, BackendSamplerV2

        seed = options.seed
        settings = {} if seed is None else {"seed_simulator": int(seed) % (2**31)}
        if use_m3:
            return BackendSamplerV2(backend=self.backend, options=settings)
        return BackendEstimatorV2(backend=self.backend, options=settings)
