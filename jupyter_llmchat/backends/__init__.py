"""The model backend wing: where answers come from.

`model_backend.ModelBackend` is the seam the service talks to: the in-process llama.cpp
engine (`model_backend.llama_backend`, over `..engine`) or an OpenAI-compatible model
server (`openai_backend.OpenAIBackend`). The llama engine is brought in by reference and
switched while serving by `managed_model.ManagedModel` (references resolved by `..models`).
Importing this wing loads no Tornado handler.
"""
