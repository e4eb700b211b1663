"""Planning what a program needs on a device mesh: reading compiled programs."""
