"""Small helpers shared across medldm packages (files, hashing)."""
