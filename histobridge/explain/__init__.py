"""Explaining tile classifiers: heatmaps over slides, and synthetic histology from a class-conditional
GAN (class blending, layer blending, class-swap seeds, matched synthetic tiles), with pictures and
reports. Submodules import torch only when their functions run."""
