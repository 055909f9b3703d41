"""The mmtok command line (installed as mmtok.cli). Commands import torch inside their bodies."""
