"""The kernel wing: what notebook code, widgets and the CLI use to reach a server.

It speaks only the shared `..protocol` over HTTP and WebSockets: importing it loads no
Tornado handler, no server module and no llama.cpp.
"""
