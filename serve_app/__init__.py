"""The Ray Serve application: broker HTTP routes, the Standalone runtime API and the WebSocket ingress."""
