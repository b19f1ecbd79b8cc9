"""Error mitigation for the hardware path: M3 readout correction and calibrated noise.

- :mod:`qldm.mitigation.m3`: M3 readout mitigation with calibrations kept per device and qubits (in
  the job store inside the server, in files standalone) and reused until a maximum age.
- :mod:`qldm.mitigation.noise`: Kraus-free realizations of the spec's channels (randomized Pauli
  insertion, ancilla dilation) and the device noise floor they are subtracted from.
"""

from qldm.errors import MitigationError, NoiseFloorError
from qldm.mitigation.m3 import (
    CalibrationCache,
    CalibrationStorage,
    FileCalibrations,
    ReadoutCalibration,
)

__all__ = [
    "CalibrationCache",
    "CalibrationStorage",
    "FileCalibrations",
    "MitigationError",
    "NoiseFloorError",
    "ReadoutCalibration",
]
