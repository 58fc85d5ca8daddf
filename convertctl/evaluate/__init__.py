"""Output comparison metrics and accuracy gates."""
