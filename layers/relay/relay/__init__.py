"""The campaign relay library: models, upstream clients, DynamoDB store, rate limiter and flows.

Shipped as a Lambda layer; every function imports it as ``relay``.
"""
