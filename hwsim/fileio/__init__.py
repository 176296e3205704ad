"""Files in and out: atomic writes (:mod:`hwsim.fileio.atomic`) and bounded readers
(:mod:`hwsim.fileio.bounded`), torch-free so that both packages use them.
"""
