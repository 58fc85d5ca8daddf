"""TensorRT target internals: profiles, trtexec command lines, build kit, builder, runner, engine metadata."""
