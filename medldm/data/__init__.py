"""Named datasets, the local data root and subject-level splits."""
