from hwsim.explore.cli import main

main()
