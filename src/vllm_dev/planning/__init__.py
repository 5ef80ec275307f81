"""What one command works from: the lazy workspace (settings, checkout, interpreter, tools) and the
frozen build plan resolved from it. Below the steps, which take them; above the rest."""
