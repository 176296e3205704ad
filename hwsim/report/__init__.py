"""Reports that put each task's accuracy beside its cost: the numbers (:mod:`hwsim.report.tables`),
the figures (:mod:`hwsim.report.figures`) and the Markdown sections (:mod:`hwsim.report.sections`).
"""
