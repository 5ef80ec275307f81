"""The user-facing steps, one module each (setup, prime, build, install, clean, ...)."""
