"""``python -m qldm``: the same command line as ``qldm``."""

from qldm.cli import app

app(prog_name="qldm")
