"""Process plumbing: running programs, output streams, interrupts, locks, atomic files, progress."""
