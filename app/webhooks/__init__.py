"""Platform webhooks: verified and recorded in the request (views), handled by the worker (handlers)."""
