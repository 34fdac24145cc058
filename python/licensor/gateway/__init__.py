"""The aiohttp gateway: middlewares, authentication, the declared operations and the OpenAPI document."""
