"""Sample data: the real images or seeded tensors every artifact is verified on."""
