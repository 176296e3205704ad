"""``ksm-compare``'s protocol and tables, and the accuracy tables over finished runs.
"""
