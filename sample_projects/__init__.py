"""Sample QuPath projects shipped with histobridge (package data; see histobridge.qupath.sample)."""
