"""The tensorrt target: options.py (recipe options), check.py + parser.py + table.py + data/ (its judge),
qdq_validator.py (its Q/DQ rules), profiles, trtexec command lines, the build kit, builder, runner, engine
metadata, and target.py (TARGET)."""
