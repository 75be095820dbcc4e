"""``python -m medldm.bench`` = ``medldm-bench``."""

from medldm.bench.cli import main

if __name__ == "__main__":
    main()
