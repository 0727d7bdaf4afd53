"""QuPath Groovy scripts shipped with histobridge (package data; see histobridge.qupath.scripts)."""
