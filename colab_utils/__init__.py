"""colab_utils: StyleGAN2 and StarGAN v2 training, local face editing and video translation for Colab.

Notebooks in ``notebooks/`` are the front door; every piece of logic they call lives in this package.
"""
__version__ = "0.1.0"
