"""The reconstruction app: presets, the pipeline behind ``medldm.reconstruct`` and
``medldm-recon``, run-folder outputs and the HTML report."""
