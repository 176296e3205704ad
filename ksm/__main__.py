from ksm.cli.ksm_train import main

main()
