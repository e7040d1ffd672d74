"""Explain and control a model: attention maps, attributions, concept vectors (TCAV),
adversarial attacks and generation guards. Heavy dependencies (captum, outlines-core) load
inside the functions that need them."""
