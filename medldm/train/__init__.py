"""Training the prior: stage 1 autoencoder, stage 2 latent diffusion (single process or
``torchrun``). Console scripts ``medldm-train-autoencoder`` and ``medldm-train-diffusion``."""
