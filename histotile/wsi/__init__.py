"""Stage 1: open any slide and read regions as RGB numpy arrays (``histotile.wsi``)."""

from histotile.wsi.levels import LevelChoice, choose_level
from histotile.wsi.slide import Slide, open_slide

__all__ = ["LevelChoice", "Slide", "choose_level", "open_slide"]
