"""Process-wide CLI flags (set by the root group and by every subcommand's common options)."""

verbose = False
quiet = False
json_output = False
