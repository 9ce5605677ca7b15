"""HAI-Platform: time-sharing job scheduler with node-granular gang allocation and preemption."""
