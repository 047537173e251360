"""Integrations with outside systems, one module each (Slack and generic webhooks: ``notify``)."""
