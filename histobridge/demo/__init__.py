"""The end-to-end demo on the bundled sample project, and its report."""
