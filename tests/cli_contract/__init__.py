"""The command-line contract, checked on hostile input (``tests/test_cli_contract.py``).

``harness`` runs a command in a sandbox folder and lists the ways it broke the contract; ``hostile`` holds the
hypothesis strategies that turn a valid input into a hostile one, each saying whether a reader must refuse it.
"""
