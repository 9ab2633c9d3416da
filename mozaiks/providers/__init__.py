"""Model providers: OpenAI-compatible (the ``openai`` SDK) and the scripted provider for offline runs."""
