"""``python -m medldm.recon`` = ``medldm-recon``."""

from medldm.recon.cli import main

if __name__ == "__main__":
    main()
