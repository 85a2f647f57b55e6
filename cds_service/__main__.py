"""`python -m cds_service` runs the same command line as `calciphylaxis-cds`."""

from cds_service.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
