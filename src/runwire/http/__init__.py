"""The HTTP side of the gateway: routes on the WebSocket's port."""
