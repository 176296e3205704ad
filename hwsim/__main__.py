"""`python -m hwsim` runs the `ksm-sim` command."""

from hwsim.ksm_sim import main

if __name__ == "__main__":
    main()
