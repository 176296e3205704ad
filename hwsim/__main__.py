"""`python -m hwsim` runs the `ksm-sim` command."""

from hwsim.cli import main

if __name__ == "__main__":
    main()
