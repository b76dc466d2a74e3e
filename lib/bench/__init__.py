"""Speed and numerics: the kit's loop against the reference-style loop, numerical checks, per-method costs."""
