"""Ready-made models written in genvi (see :mod:`genvi.models.vae`)."""
