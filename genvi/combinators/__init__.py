"""Combinators (layer 2): generative functions built from others."""

from genvi.combinators.scan import ScanGF, scan
from genvi.combinators.switch import SwitchGF, cond, switch
from genvi.combinators.vmap import VmapGF, vmap

__all__ = ["vmap", "scan", "cond", "switch", "VmapGF", "ScanGF", "SwitchGF"]
