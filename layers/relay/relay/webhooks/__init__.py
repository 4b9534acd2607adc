"""Inbound and outbound webhooks: signatures, the Optimized.app event adapter."""
