"""Task data: the built-in default suite (real data shipped in packages) and image folders.
"""
