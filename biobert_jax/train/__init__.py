"""Training primitives shared by both trainers: optimizer, losses, state, steps, loop."""
