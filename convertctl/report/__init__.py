"""The manifest (the one record of a run) and its renderings."""
