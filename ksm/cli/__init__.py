"""The command lines, one module each, named after the command: ``ksm-train`` is
:mod:`ksm.cli.ksm_train`, ``ksm-export`` :mod:`ksm.cli.ksm_export`, ``ksm-compare`` :mod:`ksm.cli.ksm_compare`.
"""
