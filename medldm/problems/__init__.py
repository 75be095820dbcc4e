"""The shared layer below the apps (train, bench, recon): config loading, the model view
(image <-> prior space) and measurement simulation."""
