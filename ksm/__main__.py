from ksm.cli import main

main()
