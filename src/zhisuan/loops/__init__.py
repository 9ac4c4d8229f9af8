"""Background loops of the control plane: load briefly, decide in pure core code, apply under a lease."""
