"""histotile: whole-slide tiling, CNN tile classification and heatmap slides."""

__version__ = "0.1.0"
