"""Speed benchmarks: wall time, memory and host syncs against bare training loops."""
