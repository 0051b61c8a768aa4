"""The HTTP side: webmail, admin pages and the JSON API (an ASGI app served by uvicorn)."""
