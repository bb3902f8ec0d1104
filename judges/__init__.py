"""Turning sampled traffic into paired quality verdicts (sampling, shadow generation, judging)."""
