from hwsim.explore.ksm_explore import main

main()
