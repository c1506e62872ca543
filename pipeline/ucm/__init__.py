"""Ultrametric contour maps: the algorithm, external ucm2 import, the ucm stage."""
