"""QuPath's own Java code through paquo, always in a child process (a JVM cannot be restarted
in one process): reading annotations and writing heatmap tiles."""
