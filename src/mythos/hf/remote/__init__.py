"""Files copied verbatim into an exported Hugging Face directory; never imported from inside mythos.

``modeling_mythos.py`` imports the model through relative imports (``.mythos_model``) that exist only in the
export, where :mod:`mythos.hf.export` places copies of ``mythos.model``'s own modules beside it.
"""
