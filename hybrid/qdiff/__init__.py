"""Quantum diffusion proper (issue 13): seeds 001, 003 and 004 on amplitude-encoded digits.

- :mod:`~qldm.hybrid.qdiff.quantum_unet`: seed 001's hybrid quantum U-Net (ComplexLinear
  encoder, complex amplitude encoding, PQC, decoder with a skip connection), infidelity loss,
  QNGD or Adam;
- :mod:`~qldm.hybrid.qdiff.qdm_denoiser`: seed 003's PQC as the denoising operator, complex
  Gaussian noise, the small conditioned latent model;
- :mod:`~qldm.hybrid.qdiff.depolarizing`: seed 004's depolarizing forward process, a
  timestep-embedded Born machine and a classical decoder;
- :mod:`~qldm.hybrid.qdiff.x0_diffusion`: the classical controls of the same parameter count;
- :mod:`~qldm.hybrid.qdiff.config`, :mod:`~qldm.hybrid.qdiff.run`: ``qldm train`` configs
  (``kind: quantum_unet | qdm_denoiser | depolarizing_diffusion``) and checkpoints.
"""
