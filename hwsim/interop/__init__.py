"""A design point in the detailed tools' own formats (ZigZag, Timeloop): ``ksm-sim --export``.
"""
