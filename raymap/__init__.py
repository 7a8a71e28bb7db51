"""raymap."""
