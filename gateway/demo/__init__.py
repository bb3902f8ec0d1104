"""`cliffguard demo`: a staged rollout caught regressing, live, on one machine with no GPU."""
