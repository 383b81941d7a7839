"""Combinators (layer 2): generative functions built from others."""

from genvi.combinators._scan import ScanGF, scan
from genvi.combinators._switch import SwitchGF, cond, switch
from genvi.combinators._vmap import VmapGF, vmap

__all__ = ["vmap", "scan", "cond", "switch", "VmapGF", "ScanGF", "SwitchGF"]
