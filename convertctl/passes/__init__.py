"""Graph passes. Each is followed by a parity check and rolled back if it changes results."""
