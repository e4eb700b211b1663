"""Training primitives shared by both trainers: optimizer, losses, state, steps, compile
ahead, loop.
"""
