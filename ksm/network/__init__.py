"""The frozen backbone: torchvision builders and weights, and the layer table that hwsim costs.
"""
