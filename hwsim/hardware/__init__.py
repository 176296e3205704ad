"""The accelerator side: profiles (YAML) loaded and validated, ``--set`` overrides, silicon area.
"""
