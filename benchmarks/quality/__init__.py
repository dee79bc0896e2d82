"""Quality benchmarks: how good the suggested learning rates are, on a suite and hold-outs."""
