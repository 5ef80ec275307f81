"""CMake presets: templates rendered into a checkout, and the user's own CMakeUserPresets.json."""
