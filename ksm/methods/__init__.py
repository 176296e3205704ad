"""The methods: one module per method family, each class registered by name with
:func:`ksm.methods.registry.register_method` and described torch-free in :mod:`hwsim.catalogue`.
"""
