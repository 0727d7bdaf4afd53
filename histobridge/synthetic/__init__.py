"""Synthetic histology from a class-conditional generator: matched synthetic tiles for annotated
regions, class blending, layer blending and class-swap seed search.

Modules, lowest first (each imports only those above it in this list):

* ``conditioning`` — class lookup (one rule for every command), one-hot/soft labels, latents from
  seeds, batched rendering to uint8;
* ``fov`` — crop-then-resize of GAN tiles to a classifier's field of view;
* ``matched`` — matched synthetic tiles and class-swapped twins in a tile store;
* ``synthesis`` — ``generate`` (tiles, optionally classified), re-exporting ``fov`` and ``matched``;
* ``blending`` and ``seeds`` — class/layer blending and class-swap seed search.
"""
