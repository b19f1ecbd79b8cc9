"""Error mitigation for the hardware path: M3 readout correction and calibrated noise.

- :mod:`mitigation.m3`: M3 readout mitigation with calibrations cached per device and qubits.
- :mod:`mitigation.noise`: Kraus-free realizations of the spec's channels (randomized Pauli
  insertion, ancilla dilation) and the device noise floor they are subtracted from.
"""

from mitigation._errors import MitigationError, NoiseFloorError
from mitigation.m3 import CalibrationCache, ReadoutCalibration

__all__ = ["CalibrationCache", "MitigationError", "NoiseFloorError", "ReadoutCalibration"]
