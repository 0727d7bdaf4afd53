"""Synthetic histology from a class-conditional generator: matched synthetic tiles for annotated
regions, class blending, layer blending and class-swap seed search."""
