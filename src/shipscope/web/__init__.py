"""The web layer: FastAPI app, auth and request bodies."""
