"""The methods: one module per method (KSM in :mod:`ksm.methods.kernel_soft_mask`, Piggyback, fine-tuning,
head only, PackNet, CPG, LoRA), each class registered by name with
:func:`ksm.methods.registry.register_method` and described torch-free by its row in :mod:`hwsim.catalogue`.
"""
